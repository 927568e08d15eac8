#!/usr/bin/env bash
# provision-service-bot-key.sh — create, rotate or revoke a service bot key of the SITG
# backend (a row of its service_bot_keys table) and print the worker variables.
#
# Usage:
#   provision-service-bot-key.sh [--key-id ID] [--secret SECRET | --secret-file FILE]
#                                [--database-url URL] [--rotate | --revoke | --only-print]
#
#   (no mode)      create a new key: a row (key_id, secret_hash, active=true,
#                  revoked_at=NULL, created_at=now()); fails if ID exists
#   --rotate       replace the secret of the existing key ID (the id stays; the row is
#                  made active again). The old secret stops working at once: for a
#                  rotation without downtime, create a second key instead and revoke the
#                  first once every worker uses the new one (docs/operations.md)
#   --revoke       set active=false and revoked_at=now() on key ID; prints nothing
#   --only-print   touch no database: print the variables for ID and SECRET
#   --key-id ID    key id, [A-Za-z0-9][A-Za-z0-9_.-]{0,127}; default bck_live_<24 hex>
#   --secret S     the secret: 32..512 letters, digits and _ . , : / + = @ % ^ -
#                  (hex or base64 qualify); default 64 random hex characters. Prefer
#                  --secret-file: command lines are visible to other users (ps)
#   --secret-file F  read the secret from file F (first line), or from stdin when F is -
#   --database-url URL  postgres:// or postgresql:// URL of the backend database;
#                  default $DATABASE_URL. Put the password in ~/.pgpass or PGPASSWORD
#                  rather than in the URL
#   -h, --help     show this help
#
# On success stdout holds exactly these lines, for the worker's env file or Secret:
#   BACKEND_BOT_KEY_ID=<id>
#   BACKEND_INTERNAL_HMAC_SECRET=<secret>
#   BACKEND_SERVICE_TOKEN=
# The backend stores only secret_hash = "sha256:" + hex(SHA-256(secret)) (contract
# section 1.1); the secret itself is printed once, here, and nowhere else: not in
# messages, not on psql's command line. Status messages go to stderr.
#
# Exit status: 0 done; 1 database or tool failure; 2 invalid arguments.
#
# Needs: bash, psql (PostgreSQL client), sha256sum, od (coreutils).
set -euo pipefail
# Never trace: a trace would print the secret.
set +x
umask 077

PROG="${0##*/}"
KEY_ID_RE='^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'
# Characters that mean nothing to a shell, systemd's EnvironmentFile or YAML, so
# the secret is the same value wherever it is pasted (base64 and hex qualify).
SECRET_RE='^[A-Za-z0-9_.,:/+=@%^-]{32,512}$'

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

die() {
	printf '%s: %s\n' "$PROG" "$1" >&2
	exit "${2:-1}"
}

bad_usage() {
	printf '%s: %s\n' "$PROG" "$1" >&2
	printf "Try '%s --help'.\n" "$PROG" >&2
	exit 2
}

random_hex() {
	# $1 random bytes as lowercase hex.
	od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

key_id=""
secret=""
secret_given=0
database_url="${DATABASE_URL:-}"
mode=create

need_value() {
	[[ $# -ge 2 && -n "$2" ]] || bad_usage "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	-h | --help)
		usage
		exit 0
		;;
	--key-id)
		need_value "$@"
		key_id="$2"
		shift 2
		;;
	--key-id=*)
		key_id="${1#*=}"
		shift
		;;
	--secret)
		need_value "$@"
		secret="$2"
		secret_given=1
		shift 2
		;;
	--secret=*)
		secret="${1#*=}"
		secret_given=1
		shift
		;;
	--secret-file)
		need_value "$@"
		if [[ "$2" == "-" ]]; then
			IFS= read -r secret || [[ -n "$secret" ]] || bad_usage "--secret-file -: nothing on stdin"
		else
			[[ -r "$2" ]] || bad_usage "--secret-file: cannot read $2"
			IFS= read -r secret <"$2" || [[ -n "$secret" ]] || bad_usage "--secret-file: $2 is empty"
		fi
		secret_given=1
		shift 2
		;;
	--database-url)
		need_value "$@"
		database_url="$2"
		shift 2
		;;
	--database-url=*)
		database_url="${1#*=}"
		shift
		;;
	--rotate | --revoke | --only-print)
		[[ "$mode" == create ]] || bad_usage "choose one of --rotate, --revoke and --only-print"
		mode="${1#--}"
		shift
		;;
	*)
		bad_usage "unknown argument: $1"
		;;
	esac
done

case "$mode" in
rotate | revoke)
	[[ -n "$key_id" ]] || bad_usage "--$mode needs --key-id of the existing key"
	;;
esac
if [[ "$mode" == revoke && "$secret_given" == 1 ]]; then
	bad_usage "--revoke takes no secret"
fi
if [[ -z "$key_id" ]]; then
	key_id="bck_live_$(random_hex 12)"
fi
[[ "$key_id" =~ $KEY_ID_RE ]] ||
	bad_usage "--key-id must match ${KEY_ID_RE} (letters, digits, '_', '.', '-'; at most 128)"
if [[ "$secret_given" == 1 ]]; then
	# The message describes the rule, never the value.
	[[ "$secret" =~ $SECRET_RE ]] ||
		bad_usage "the secret must be 32 to 512 letters, digits and _ . , : / + = @ % ^ - (hex or base64)"
elif [[ "$mode" != revoke ]]; then
	secret="$(random_hex 32)"
fi

if [[ "$mode" != only-print ]]; then
	[[ -n "$database_url" ]] || bad_usage "no database: pass --database-url or set DATABASE_URL"
	[[ "$database_url" =~ ^postgres(ql)?:// ]] ||
		bad_usage "--database-url must be a postgres:// or postgresql:// URL"
	command -v psql >/dev/null || die "psql not found: install the PostgreSQL client (Debian: postgresql-client)"
fi

print_env() {
	printf 'BACKEND_BOT_KEY_ID=%s\n' "$key_id"
	printf 'BACKEND_INTERNAL_HMAC_SECRET=%s\n' "$secret"
	printf 'BACKEND_SERVICE_TOKEN=\n'
}

if [[ "$mode" == only-print ]]; then
	print_env
	exit 0
fi

# Runs the SQL on stdin against the database and prints its single-value result.
# Values travel as psql variables inside stdin (printf is a shell builtin), so no
# secret or hash appears on a command line; :'name' quotes them as SQL literals.
run_sql() {
	psql --no-psqlrc --quiet --no-align --tuples-only --set ON_ERROR_STOP=1 \
		--dbname "$database_url"
}

sql_vars() {
	# Both values are checked above to hold no quote or backslash.
	printf '%s\n' "\\set key_id '${key_id}'"
	if [[ -n "${secret_hash:-}" ]]; then
		printf '%s\n' "\\set secret_hash '${secret_hash}'"
	fi
}

if [[ "$mode" != revoke ]]; then
	digest="$(printf '%s' "$secret" | sha256sum)"
	secret_hash="sha256:${digest%% *}"
fi

case "$mode" in
create)
	result="$({
		sql_vars
		cat <<-'SQL'
			INSERT INTO service_bot_keys (key_id, secret_hash, active, revoked_at, created_at)
			VALUES (:'key_id', :'secret_hash', true, NULL, now())
			ON CONFLICT (key_id) DO NOTHING
			RETURNING 'created';
		SQL
	} | run_sql)" || die "creating key ${key_id} failed (see the psql message above)"
	[[ "$result" == created ]] ||
		die "key ${key_id} already exists: pass --rotate to replace its secret, or choose another --key-id"
	printf '%s: created service bot key %s\n' "$PROG" "$key_id" >&2
	;;
rotate)
	result="$({
		sql_vars
		cat <<-'SQL'
			UPDATE service_bot_keys
			SET secret_hash = :'secret_hash', active = true, revoked_at = NULL
			WHERE key_id = :'key_id'
			RETURNING 'rotated';
		SQL
	} | run_sql)" || die "rotating key ${key_id} failed (see the psql message above)"
	[[ "$result" == rotated ]] || die "no key ${key_id} to rotate (create it without --rotate)"
	printf '%s: rotated service bot key %s: the previous secret no longer verifies\n' "$PROG" "$key_id" >&2
	;;
revoke)
	result="$({
		sql_vars
		cat <<-'SQL'
			UPDATE service_bot_keys
			SET active = false, revoked_at = coalesce(revoked_at, now())
			WHERE key_id = :'key_id'
			RETURNING 'revoked';
		SQL
	} | run_sql)" || die "revoking key ${key_id} failed (see the psql message above)"
	[[ "$result" == revoked ]] || die "no key ${key_id} to revoke"
	printf '%s: revoked service bot key %s\n' "$PROG" "$key_id" >&2
	exit 0
	;;
esac

print_env
