#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(struct sb *sb) { memset(sb, 0, sizeof(*sb)); }

void sb_free(struct sb *sb)
{
	free(sb->buf);
	sb_init(sb);
}

static bool sb_reserve(struct sb *sb, size_t more)
{
	if (sb->failed)
		return false;
	if (sb->len + more + 1 <= sb->cap)
		return true;
	size_t cap = sb->cap ? sb->cap : 1024;
	while (cap < sb->len + more + 1)
		cap *= 2;
	char *buf = realloc(sb->buf, cap);
	if (!buf) {
		sb->failed = true;
		return false;
	}
	sb->buf = buf;
	sb->cap = cap;
	return true;
}

void sb_raw(struct sb *sb, const char *s, size_t n)
{
	if (!sb_reserve(sb, n))
		return;
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

void sb_str(struct sb *sb, const char *s) { sb_raw(sb, s, strlen(s)); }

void sb_printf(struct sb *sb, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		sb->failed = true; /* only used for short, formatted numbers */
		return;
	}
	sb_raw(sb, tmp, (size_t)n);
}

bool utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t extra;
		unsigned int min;
		unsigned int cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			extra = 1, min = 0x80, cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			extra = 2, min = 0x800, cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			extra = 3, min = 0x10000, cp = c & 0x07;
		} else {
			return false;
		}
		if (i + extra >= n)
			return false; /* sequence cut short by the end */
		for (size_t k = 1; k <= extra; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		/* overlong forms, UTF-16 surrogates and code points past Unicode are not UTF-8 */
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += extra + 1;
	}
	return true;
}

bool sb_json_string(struct sb *sb, const char *s)
{
	if (!s) {
		sb_str(sb, "null");
		return true;
	}
	size_t n = strlen(s);
	if (!utf8_valid(s, n)) {
		sb_str(sb, "null");
		return false;
	}
	sb_raw(sb, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			sb_raw(sb, esc, 2);
		} else if (c < 0x20 || c == 0x7F) {
			sb_printf(sb, "\\u%04x", c);
		} else {
			sb_raw(sb, (const char *)&s[i], 1);
		}
	}
	sb_raw(sb, "\"", 1);
	return true;
}

/* ---- validating scanner ---- */

struct scan {
	const char *s;
	size_t n, i;
	const char *error;
};

#define MAX_DEPTH 64

static void ws(struct scan *sc)
{
	while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' || sc->s[sc->i] == '\n' ||
				 sc->s[sc->i] == '\r'))
		sc->i++;
}

static int fail(struct scan *sc, const char *why)
{
	if (!sc->error)
		sc->error = why;
	return -1;
}

static int hex4(struct scan *sc)
{
	for (int k = 0; k < 4; k++, sc->i++) {
		if (sc->i >= sc->n)
			return fail(sc, "truncated \\u escape");
		char c = sc->s[sc->i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return fail(sc, "bad \\u escape");
	}
	return 0;
}

static int string(struct scan *sc)
{
	if (sc->i >= sc->n || sc->s[sc->i] != '"')
		return fail(sc, "expected a string");
	size_t start = ++sc->i;
	while (sc->i < sc->n) {
		unsigned char c = (unsigned char)sc->s[sc->i];
		if (c == '"') {
			if (!utf8_valid(sc->s + start, sc->i - start))
				return fail(sc, "string is not valid UTF-8");
			sc->i++;
			return 0;
		}
		if (c < 0x20)
			return fail(sc, "control character in string");
		if (c == '\\') {
			sc->i++;
			if (sc->i >= sc->n)
				return fail(sc, "truncated escape");
			char e = sc->s[sc->i++];
			if (e == 'u') {
				if (hex4(sc))
					return -1;
			} else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
				return fail(sc, "bad escape");
			}
			continue;
		}
		sc->i++;
	}
	return fail(sc, "unterminated string");
}

static int literal(struct scan *sc, const char *word)
{
	size_t len = strlen(word);
	if (sc->n - sc->i < len || memcmp(sc->s + sc->i, word, len) != 0)
		return fail(sc, "unexpected token");
	sc->i += len;
	return 0;
}

static int number(struct scan *sc)
{
	size_t start = sc->i;
	if (sc->i < sc->n && sc->s[sc->i] == '-')
		sc->i++;
	size_t digits = sc->i;
	while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
		sc->i++;
	if (sc->i == digits)
		return fail(sc, "bad number");
	if (sc->s[digits] == '0' && sc->i - digits > 1)
		return fail(sc, "leading zero in number");
	if (sc->i < sc->n && sc->s[sc->i] == '.') {
		size_t frac = ++sc->i;
		while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
			sc->i++;
		if (sc->i == frac)
			return fail(sc, "bad fraction");
	}
	if (sc->i < sc->n && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
		sc->i++;
		if (sc->i < sc->n && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
			sc->i++;
		size_t exp = sc->i;
		while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
			sc->i++;
		if (sc->i == exp)
			return fail(sc, "bad exponent");
	}
	return sc->i > start ? 0 : fail(sc, "bad number");
}

static int value(struct scan *sc, int depth);

static int container(struct scan *sc, int depth, char open, char close, bool members)
{
	if (depth > MAX_DEPTH)
		return fail(sc, "nested too deeply");
	sc->i++; /* open */
	(void)open;
	ws(sc);
	if (sc->i < sc->n && sc->s[sc->i] == close) {
		sc->i++;
		return 0;
	}
	for (;;) {
		ws(sc);
		if (members) {
			if (string(sc))
				return -1;
			ws(sc);
			if (sc->i >= sc->n || sc->s[sc->i] != ':')
				return fail(sc, "expected ':'");
			sc->i++;
		}
		if (value(sc, depth + 1))
			return -1;
		ws(sc);
		if (sc->i >= sc->n)
			return fail(sc, "unterminated object or array");
		if (sc->s[sc->i] == ',') {
			sc->i++;
			continue;
		}
		if (sc->s[sc->i] == close) {
			sc->i++;
			return 0;
		}
		return fail(sc, "expected ',' or a closing bracket");
	}
}

static int value(struct scan *sc, int depth)
{
	ws(sc);
	if (sc->i >= sc->n)
		return fail(sc, "expected a value");
	switch (sc->s[sc->i]) {
	case '{':
		return container(sc, depth, '{', '}', true);
	case '[':
		return container(sc, depth, '[', ']', false);
	case '"':
		return string(sc);
	case 't':
		return literal(sc, "true");
	case 'f':
		return literal(sc, "false");
	case 'n':
		return literal(sc, "null");
	default:
		return number(sc);
	}
}

int json_object_members(const char *doc, size_t len, const char *const *keys, size_t n, struct json_span *out,
			const char **error)
{
	struct scan sc = {.s = doc, .n = len, .i = 0, .error = NULL};
	for (size_t k = 0; k < n; k++)
		out[k] = (struct json_span){NULL, 0};
	ws(&sc);
	if (sc.i >= sc.n || sc.s[sc.i] != '{') {
		*error = "not a JSON object";
		return -1;
	}
	sc.i++;
	ws(&sc);
	if (sc.i < sc.n && sc.s[sc.i] == '}') {
		sc.i++;
	} else {
		for (;;) {
			ws(&sc);
			size_t key_start = sc.i + 1;
			if (string(&sc))
				goto bad;
			size_t key_len = sc.i - 1 - key_start;
			ws(&sc);
			if (sc.i >= sc.n || sc.s[sc.i] != ':') {
				fail(&sc, "expected ':'");
				goto bad;
			}
			sc.i++;
			ws(&sc);
			size_t value_start = sc.i;
			if (value(&sc, 1))
				goto bad;
			for (size_t k = 0; k < n; k++) {
				if (strlen(keys[k]) == key_len && memcmp(keys[k], doc + key_start, key_len) == 0)
					out[k] = (struct json_span){doc + value_start, sc.i - value_start};
			}
			ws(&sc);
			if (sc.i < sc.n && sc.s[sc.i] == ',') {
				sc.i++;
				continue;
			}
			if (sc.i < sc.n && sc.s[sc.i] == '}') {
				sc.i++;
				break;
			}
			fail(&sc, "expected ',' or '}'");
			goto bad;
		}
	}
	ws(&sc);
	if (sc.i != sc.n) {
		*error = "trailing data after the object";
		return -1;
	}
	return 0;
bad:
	*error = sc.error ? sc.error : "invalid JSON";
	return -1;
}
