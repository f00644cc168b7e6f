/* Small JSON helpers: a string builder that writes JSON, and a validating scanner that finds members of a
 * top-level object without building a tree (all the wrapper needs from runc's process.json). */
#ifndef CA_JSON_H
#define CA_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct sb {
	char *buf;
	size_t len, cap;
	bool failed; /* an allocation failed: the content is incomplete and must not be used */
};

void sb_init(struct sb *sb);
void sb_free(struct sb *sb);
void sb_raw(struct sb *sb, const char *s, size_t n);
void sb_str(struct sb *sb, const char *s);           /* appends s unquoted */
void sb_printf(struct sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string, or `null` when s is NULL. Returns false when s is not valid UTF-8 (then
 * `null` is written instead, so the document stays valid JSON). */
bool sb_json_string(struct sb *sb, const char *s);

bool utf8_valid(const char *s, size_t n);

struct json_span {
	const char *start; /* NULL when the member is absent */
	size_t len;
};

/* Validates that doc is one JSON object and, for each of the n keys, reports the raw text of the member's
 * value (already validated JSON). Returns 0, or -1 with *error set to a static description. */
int json_object_members(const char *doc, size_t len, const char *const *keys, size_t n, struct json_span *out,
			const char **error);

#endif
