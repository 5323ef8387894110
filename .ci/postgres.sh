#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the store tests and print the URL they read.
#
# Usage (Debian, as root; idempotent, so running it twice reuses the running server):
#
#     source .ci/postgres.sh              # preferred: returns non-zero when the server can't start;
#                                         # the work runs in a child bash, so `set -e` and `exit`
#                                         # never leak into the calling shell
#     line="$(bash .ci/postgres.sh)" && eval "${line}"   # same; stdout is one `export` line
#     bash .ci/postgres.sh --stop         # stop the server (the data directory is kept)
#
# Beware a bare `eval "$(bash .ci/postgres.sh)"`: eval of an empty string succeeds, so a failed
# start goes unnoticed even under `set -e` and the PostgreSQL tests are merely skipped.
#
# Either way the calling shell ends up with
#     CHORUS_TEST_PG_URL=postgresql+psycopg://USER:PASS@127.0.0.1:PORT/DB
# and, when $GITHUB_ENV is set (GitHub Actions), the same line is appended there for later steps.
#
# Why a private cluster (initdb into its own directory) and not Debian's `main` cluster: it needs
# no systemd, does not depend on which PostgreSQL major Debian ships, and cannot collide with a
# server someone already runs on 5432. Progress goes to stderr; stdout carries only the export.
#
# Knobs (environment): CHORUS_PG_DIR (/var/tmp/chorus-pg), CHORUS_PG_PORT (first free from 55432),
# CHORUS_PG_USER (chorus), CHORUS_PG_PASSWORD (chorus), CHORUS_PG_DB (chorus_test).

if [[ "${BASH_SOURCE[0]}" != "${0}" ]]; then
    # Sourced: do the work in a child shell and import only its export line.
    _chorus_pg_out="$(bash "${BASH_SOURCE[0]}" "$@")" || { unset _chorus_pg_out; return 1; }
    eval "${_chorus_pg_out}"
    unset _chorus_pg_out
    return 0
fi

set -euo pipefail

PG_DIR="${CHORUS_PG_DIR:-/var/tmp/chorus-pg}"
PG_DATA="${PG_DIR}/data"
PG_RUN="${PG_DIR}/run"       # unix socket directory; keeps us out of /var/run/postgresql
PG_LOG="${PG_DIR}/server.log"
PG_USER="${CHORUS_PG_USER:-chorus}"
PG_PASSWORD="${CHORUS_PG_PASSWORD:-chorus}"
PG_DB="${CHORUS_PG_DB:-chorus_test}"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages and runs the server as the postgres user)"

find_bindir() {
    # Newest installed major version that has the server binaries.
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "${d}/initdb" && -x "${d}/pg_ctl" && -x "${d}/postgres" ]] && { echo "${d}"; return 0; }
    done
    return 1
}

if ! BINDIR="$(find_bindir)"; then
    log "PostgreSQL server binaries not found; installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BINDIR="$(find_bindir)" || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists"
fi
getent passwd postgres >/dev/null || die "no 'postgres' system user; reinstall the postgresql package"

as_postgres() { runuser -u postgres -- "$@"; }
pg_ctl() { as_postgres "${BINDIR}/pg_ctl" -D "${PG_DATA}" "$@"; }

if [[ "${1:-}" == "--stop" ]]; then
    if [[ -f "${PG_DATA}/postmaster.pid" ]]; then
        pg_ctl stop -m fast >&2
    fi
    log "stopped"
    exit 0
fi

port_in_use() {
    # bash's /dev/tcp: a successful connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

mkdir -p "${PG_DIR}" "${PG_RUN}"
chown postgres:postgres "${PG_DIR}" "${PG_RUN}"
chmod 0700 "${PG_RUN}"   # the socket trusts local users: only postgres (and root) may reach it

if [[ ! -s "${PG_DATA}/PG_VERSION" ]]; then
    log "initdb ${PG_DATA} with $(${BINDIR}/postgres --version)"
    rm -rf "${PG_DATA}"
    # Local (socket) connections by the postgres OS user are trusted so this script can
    # administer without a password; TCP connections need the role's password.
    as_postgres "${BINDIR}/initdb" -D "${PG_DATA}" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >&2
fi

if pg_ctl status >/dev/null 2>&1; then
    # Already running (a second call): reuse it and its port.
    PORT="$(sed -n 4p "${PG_DATA}/postmaster.pid")"
    log "server already running on 127.0.0.1:${PORT}"
else
    if [[ -n "${CHORUS_PG_PORT:-}" ]]; then
        PORT="${CHORUS_PG_PORT}"
        port_in_use "${PORT}" && die "port ${PORT} (CHORUS_PG_PORT) is taken by another process"
    else
        PORT=55432
        while port_in_use "${PORT}"; do
            PORT=$((PORT + 1))
            (( PORT < 55532 )) || die "no free port in 55432-55531; set CHORUS_PG_PORT"
        done
    fi
    log "starting server on 127.0.0.1:${PORT} (log: ${PG_LOG})"
    touch "${PG_LOG}" && chown postgres:postgres "${PG_LOG}"
    pg_ctl start -w -t 60 -l "${PG_LOG}" \
        -o "-c listen_addresses=127.0.0.1 -p ${PORT} -c unix_socket_directories=${PG_RUN}" >&2 \
        || { tail -n 30 "${PG_LOG}" >&2; die "server did not start (log above)"; }
fi

psql_admin() {
    as_postgres "${BINDIR}/psql" -X -q -v ON_ERROR_STOP=1 -h "${PG_RUN}" -p "${PORT}" -U postgres "$@"
}

# Role and database, created once; the password is (re)set every time so a changed
# CHORUS_PG_PASSWORD takes effect. psql's :'var' quoting keeps the values safe as literals.
psql_admin -d postgres -v user="${PG_USER}" -v pass="${PG_PASSWORD}" >&2 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'user', :'pass') \gexec
SQL
psql_admin -d postgres -v user="${PG_USER}" -v db="${PG_DB}" >&2 <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL

urlencode() {
    local s="$1" out="" c i
    for (( i = 0; i < ${#s}; i++ )); do
        c="${s:i:1}"
        case "${c}" in
            [a-zA-Z0-9._~-]) out+="${c}" ;;
            *) out+="$(printf '%%%02X' "'${c}")" ;;
        esac
    done
    printf '%s' "${out}"
}

URL="postgresql+psycopg://$(urlencode "${PG_USER}"):$(urlencode "${PG_PASSWORD}")@127.0.0.1:${PORT}/$(urlencode "${PG_DB}")"
if [[ -n "${GITHUB_ENV:-}" ]]; then
    echo "CHORUS_TEST_PG_URL=${URL}" >> "${GITHUB_ENV}"
fi
log "ready: CHORUS_TEST_PG_URL=${URL}"
printf 'export CHORUS_TEST_PG_URL=%q\n' "${URL}"
