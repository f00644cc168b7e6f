# Certificates and kubeconfigs of a local cluster or node: one CA, a serving certificate for the API server,
# client certificates, the service-account key pair. Sourced by e2e/cluster/cluster.sh and e2e/node/node.sh,
# which define die.
# shellcheck shell=bash

# make_pki DIR CA_NAME SERVER_SANS LEAF...: LEAF is NAME|SUBJECT|server or NAME|SUBJECT|client (subjects hold
# colons). Generated in a temp dir and renamed, so an interrupted run never leaves a half-made DIR; does
# nothing when DIR is complete.
make_pki() {
	local dir=$1 ca_name=$2 sans=$3 tmp
	shift 3
	[[ -f $dir/sa.pub ]] && return 0
	tmp="$dir.tmp.$$"
	rm -rf "$tmp"
	mkdir -m 700 "$tmp"
	cat >"$tmp/openssl.cnf" <<-EOF2
		# A self-contained config, so the system openssl.cnf defaults don't matter.
		[req]
		distinguished_name = dn
		prompt = no
		[dn]
		CN = unused
		[ca]
		basicConstraints = critical,CA:TRUE
		keyUsage = critical,digitalSignature,keyCertSign,cRLSign
		subjectKeyIdentifier = hash
		[server]
		basicConstraints = critical,CA:FALSE
		keyUsage = critical,digitalSignature,keyEncipherment
		extendedKeyUsage = serverAuth
		authorityKeyIdentifier = keyid
		subjectAltName = $sans
		[client]
		basicConstraints = critical,CA:FALSE
		keyUsage = critical,digitalSignature,keyEncipherment
		extendedKeyUsage = clientAuth
		authorityKeyIdentifier = keyid
	EOF2
	if ! (
		set -e
		umask 077
		cd "$tmp"
		ossl() { openssl "$@" 2>>openssl.log; }
		ossl req -x509 -config openssl.cnf -extensions ca -newkey rsa:2048 -nodes \
			-keyout ca.key -out ca.crt -days 3650 -subj "/CN=$ca_name"
		local leaf name subject section
		for leaf in "$@"; do
			IFS="|" read -r name subject section <<<"$leaf"
			ossl req -new -config openssl.cnf -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject"
			ossl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial ca.srl \
				-days 3650 -extfile openssl.cnf -extensions "$section" -out "$name.crt"
			rm -f "$name.csr"
		done
		ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
		ossl pkey -in sa.key -pubout -out sa.pub
	); then
		cat "$tmp/openssl.log" >&2 2>/dev/null || true
		rm -rf "$tmp"
		die "certificate generation with openssl failed"
	fi
	rm -f "$tmp/openssl.log"
	rm -rf "$dir"
	mv "$tmp" "$dir"
}

# write_kubeconfig_file FILE SERVER CONTEXT PKI_DIR USER: USER's client certificate from PKI_DIR, embedded.
write_kubeconfig_file() {
	local file=$1 server=$2 context=$3 pki=$4 user=$5
	(
		umask 077
		cat >"$file.tmp.$$" <<-EOF2
			apiVersion: v1
			kind: Config
			clusters:
			- name: $context
			  cluster:
			    server: $server
			    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
			users:
			- name: $user
			  user:
			    client-certificate-data: $(base64 -w0 <"$pki/$user.crt")
			    client-key-data: $(base64 -w0 <"$pki/$user.key")
			contexts:
			- name: $context
			  context:
			    cluster: $context
			    user: $user
			current-context: $context
		EOF2
	)
	mv "$file.tmp.$$" "$file"
}
