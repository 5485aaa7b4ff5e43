#!/usr/bin/env bash
# Start real PostgreSQL and MariaDB servers on loopback for the test suite, make sure the
# database `recurjobs_test` and the user `recurjobs` (password `recurjobs`) exist on both, and
# print two lines for `eval`:
#
#   export RECURJOBS_TEST_POSTGRES_URL=postgresql+psycopg://recurjobs:recurjobs@127.0.0.1:5432/recurjobs_test
#   export RECURJOBS_TEST_MYSQL_URL=mysql+pymysql://recurjobs:recurjobs@127.0.0.1:3306/recurjobs_test
#
# Usage: eval "$(bash scripts/test-databases.sh)"
#
# Only those two lines go to stdout; every diagnostic goes to stderr.
#
# - A URL that is already set in the environment is the developer's own server: it is echoed
#   back and that server is left alone.
# - As root, the Debian packages are installed when missing (apt-get) and the servers are
#   started with Debian's own tooling (pg_ctlcluster; the mariadb init script), which works
#   without systemd. Ports are 5432 and 3306 (the PostgreSQL port is read from pg_lsclusters).
# - Not root: private servers are initialised in $RECURJOBS_DB_DIR (default
#   ${TMPDIR:-/tmp}/recurjobs-test-dbs-$UID) on free loopback ports, which are remembered there.
# - Re-running is safe and quick: running servers are reused, users and grants are re-applied.
#
# Environment: RECURJOBS_DB_TIMEOUT (seconds to wait for a server, default 60).
set -euo pipefail
# Debian keeps runuser and the server tools in sbin, which a minimal PATH (env -i, a non-login
# root shell) lacks. Note: bash runs $(...) without `set -e`, so each port and URL read through
# $(...) below ends the script explicitly when its function failed (rather than printing a URL
# with an empty port).
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

readonly DB_NAME=recurjobs_test
readonly DB_USER=recurjobs
readonly DB_PASSWORD=recurjobs
readonly TIMEOUT=${RECURJOBS_DB_TIMEOUT:-60}
readonly STATE_DIR=${RECURJOBS_DB_DIR:-${TMPDIR:-/tmp}/recurjobs-test-dbs-$(id -u)}

log() { printf 'test-databases: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# wait_for DESCRIPTION COMMAND...: poll COMMAND until it succeeds, for at most $TIMEOUT seconds.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "$what did not accept connections within ${TIMEOUT}s"
            return 1
        fi
        sleep 0.2
    done
}

# show_log FILE: print the end of a server log to stderr, to explain a failure.
show_log() {
    [[ -r $1 ]] || return 0
    log "last lines of $1:"
    tail -n 30 "$1" | sed 's/^/    /' >&2
}

# A loopback port that nothing listens on (pure bash: no Python needed for this script).
free_port() {
    local port tries
    for ((tries = 0; tries < 100; tries++)); do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "found no free port"
}

APT_UPDATED=0
apt_install() {
    is_root || die "$* not installed, and only root can install it (or set the URL variables)"
    export DEBIAN_FRONTEND=noninteractive
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    apt-get install -y -q --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/postgres && -x $dir/initdb ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

ensure_postgres_installed() {
    if ! pg_bindir >/dev/null || { is_root && ! command -v pg_ctlcluster >/dev/null; }; then
        apt_install postgresql postgresql-client
    fi
    pg_bindir >/dev/null || die "no PostgreSQL server binaries under /usr/lib/postgresql"
}

# The SQL that creates (or repairs) the test role and database; run as a superuser.
postgres_setup() { # psql arguments that reach the server as superuser...
    "$@" -v ON_ERROR_STOP=1 -q -X -d postgres >/dev/null <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER LOGIN;
    END IF;
END
\$\$;
ALTER ROLE $DB_USER WITH LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = '$DB_NAME')\gexec
ALTER DATABASE $DB_NAME OWNER TO $DB_USER;
SQL
}

# Root: the Debian cluster, started with pg_ctlcluster (no systemd needed). Prints the port.
start_postgres_debian() {
    local version cluster=main port status line
    version=$(basename "$(dirname "$(pg_bindir)")")
    line=$(pg_lsclusters -h 2>/dev/null | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c' || true)
    if [[ -z $line ]]; then
        log "creating PostgreSQL cluster $version/$cluster"
        pg_createcluster "$version" "$cluster" >&2 || die "pg_createcluster failed"
        line=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c')
    fi
    port=$(awk '{print $3}' <<<"$line")
    status=$(awk '{print $4}' <<<"$line")
    if [[ $status != online* ]]; then
        log "starting PostgreSQL $version/$cluster on port $port (pg_ctlcluster)"
        mkdir -p "$STATE_DIR"
        # The server must not inherit our stdout or stderr: a caller reading them through a
        # pipe (`$(...)`, CI) would otherwise wait for the server to exit.
        if ! pg_ctlcluster "$version" "$cluster" start </dev/null >"$STATE_DIR/pg_ctlcluster.log" 2>&1; then
            show_log "$STATE_DIR/pg_ctlcluster.log"
            show_log "/var/log/postgresql/postgresql-$version-$cluster.log"
            die "pg_ctlcluster $version $cluster start failed"
        fi
    fi
    if ! wait_for "PostgreSQL on 127.0.0.1:$port" "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        show_log "/var/log/postgresql/postgresql-$version-$cluster.log"
        exit 1
    fi
    postgres_setup runuser -u postgres -- psql -p "$port" ||
        die "could not create the PostgreSQL role/database"
    printf '%s\n' "$port"
}

# Not root: a private cluster in $STATE_DIR/postgres on a free port. Prints the port.
start_postgres_private() {
    local bin data=$STATE_DIR/postgres port
    bin=$(pg_bindir)
    mkdir -p "$STATE_DIR"
    if [[ ! -s $data/PG_VERSION ]]; then
        log "initialising a private PostgreSQL cluster in $data"
        rm -rf "$data"
        "$bin/initdb" -D "$data" -U "$(id -un)" --auth-local=trust --auth-host=scram-sha-256 \
            -E UTF8 --no-instructions >"$STATE_DIR/postgres-initdb.log" 2>&1 ||
            { show_log "$STATE_DIR/postgres-initdb.log"; die "initdb failed"; }
    fi
    if [[ -s $STATE_DIR/postgres.port ]] && "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        port=$(<"$STATE_DIR/postgres.port")
    else
        port=$(free_port)
        log "starting a private PostgreSQL on 127.0.0.1:$port"
        "$bin/pg_ctl" -D "$data" -l "$STATE_DIR/postgres.log" -s -w -t "$TIMEOUT" \
            -o "-p $port -k $STATE_DIR -c listen_addresses=127.0.0.1" start \
            </dev/null >"$STATE_DIR/pg_ctl.log" 2>&1 ||
            { show_log "$STATE_DIR/pg_ctl.log"; show_log "$STATE_DIR/postgres.log"; die "pg_ctl start failed"; }
        printf '%s\n' "$port" >"$STATE_DIR/postgres.port"
    fi
    wait_for "PostgreSQL on 127.0.0.1:$port" "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" ||
        { show_log "$STATE_DIR/postgres.log"; exit 1; }
    postgres_setup "$bin/psql" -h "$STATE_DIR" -p "$port" -U "$(id -un)" ||
        die "could not create the PostgreSQL role/database"
    printf '%s\n' "$port"
}

postgres_url() {
    local port
    ensure_postgres_installed
    if is_root; then
        port=$(start_postgres_debian) || exit 1
    else
        port=$(start_postgres_private) || exit 1
    fi
    printf 'postgresql+psycopg://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$port" "$DB_NAME"
}

# ---------------------------------------------------------------------------------------------
# MariaDB

mariadb_server_bin() {
    local candidate
    for candidate in mariadbd mysqld; do
        if command -v "$candidate" >/dev/null; then
            command -v "$candidate"
            return 0
        elif [[ -x /usr/sbin/$candidate ]]; then
            printf '/usr/sbin/%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

mariadb_client_bin() {
    command -v mariadb || command -v mysql
}

ensure_mariadb_installed() {
    if ! mariadb_server_bin >/dev/null || ! mariadb_client_bin >/dev/null; then
        apt_install mariadb-server mariadb-client
    fi
    mariadb_server_bin >/dev/null || die "no MariaDB server binary (mariadbd/mysqld)"
}

# The SQL that creates (or repairs) the test user and database; run as a superuser.
# One account per loopback spelling, so TCP to 127.0.0.1 works whether or not the server
# resolves the client's address to `localhost`.
mariadb_setup() { # client arguments that reach the server as superuser...
    local sql host
    sql="CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4;"
    for host in localhost 127.0.0.1 ::1; do
        sql+="
CREATE USER IF NOT EXISTS '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'$host';
GRANT ALL PRIVILEGES ON \`${DB_NAME//_/\\_}%\`.* TO '$DB_USER'@'$host';"
    done
    sql+="
FLUSH PRIVILEGES;"
    "$@" --batch <<<"$sql" >/dev/null
}

# A TCP login as the test user (what the test suite does).
mariadb_tcp_ready() { # port
    "$(mariadb_client_bin)" --no-defaults --protocol=tcp -h 127.0.0.1 -P "$1" \
        -u "$DB_USER" "-p$DB_PASSWORD" -e "SELECT 1" "$DB_NAME"
}

# Root: Debian's MariaDB on port 3306, started with the init script (it runs mysqld_safe and
# needs no systemd); if that fails, mysqld_safe is started directly. Prints the port.
start_mariadb_debian() {
    local port=3306 client
    client=$(mariadb_client_bin)
    if ! "$client" --protocol=socket -uroot -e "SELECT 1" >/dev/null 2>&1; then
        log "starting MariaDB on port $port (service mariadb start)"
        mkdir -p "$STATE_DIR"
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
        # setsid: the server gets a session of its own, so a Ctrl-C (or a kill of the caller's
        # process group) does not take it down half-way.
        if ! setsid -w service mariadb start </dev/null >"$STATE_DIR/mariadb-start.log" 2>&1; then
            cat "$STATE_DIR/mariadb-start.log" >&2
            log "the init script failed; starting mysqld_safe directly"
            # setsid + redirections: the server must outlive us and must not hold our stdout.
            # Debian's config logs to syslog, which no daemon reads here: log to a file instead.
            mkdir -p /var/log/mysql && chown mysql:adm /var/log/mysql 2>/dev/null || true
            setsid mysqld_safe --user=mysql --log-error=/var/log/mysql/error.log \
                </dev/null >>"$STATE_DIR/mariadb-start.log" 2>&1 &
        fi
        if ! wait_for "MariaDB (unix socket)" "$client" --protocol=socket -uroot -e "SELECT 1"; then
            show_log "$STATE_DIR/mariadb-start.log"
            show_log /var/log/mysql/error.log
            exit 1
        fi
    fi
    # Debian's root@localhost authenticates by unix_socket: as root no password is needed.
    mariadb_setup "$client" --protocol=socket -uroot ||
        die "could not create the MariaDB user/database"
    wait_for "MariaDB on 127.0.0.1:$port" mariadb_tcp_ready "$port" || exit 1
    printf '%s\n' "$port"
}

# Not root: a private server in $STATE_DIR/mariadb on a free port. Prints the port.
start_mariadb_private() {
    local server client data=$STATE_DIR/mariadb sock=$STATE_DIR/mariadb.sock port install_db
    server=$(mariadb_server_bin)
    client=$(mariadb_client_bin)
    mkdir -p "$STATE_DIR"
    if [[ ! -d $data/mysql ]]; then
        install_db=$(command -v mariadb-install-db || command -v mysql_install_db) ||
            die "mariadb-install-db not found"
        log "initialising a private MariaDB data directory in $data"
        rm -rf "$data"
        "$install_db" --no-defaults --datadir="$data" --user="$(id -un)" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$STATE_DIR/mariadb-install.log" 2>&1 ||
            { show_log "$STATE_DIR/mariadb-install.log"; die "mariadb-install-db failed"; }
    fi
    if [[ -s $STATE_DIR/mariadb.port ]] &&
        "$client" --no-defaults -S "$sock" -uroot -e "SELECT 1" >/dev/null 2>&1; then
        port=$(<"$STATE_DIR/mariadb.port")
    else
        port=$(free_port)
        log "starting a private MariaDB on 127.0.0.1:$port"
        setsid "$server" --no-defaults --datadir="$data" --socket="$sock" --port="$port" \
            --bind-address=127.0.0.1 --pid-file="$STATE_DIR/mariadb.pid" \
            --log-error="$STATE_DIR/mariadb.log" </dev/null >/dev/null 2>&1 &
        printf '%s\n' "$port" >"$STATE_DIR/mariadb.port"
        wait_for "MariaDB (unix socket)" "$client" --no-defaults -S "$sock" -uroot -e "SELECT 1" ||
            { show_log "$STATE_DIR/mariadb.log"; exit 1; }
    fi
    mariadb_setup "$client" --no-defaults -S "$sock" -uroot ||
        die "could not create the MariaDB user/database"
    wait_for "MariaDB on 127.0.0.1:$port" mariadb_tcp_ready "$port" || exit 1
    printf '%s\n' "$port"
}

mysql_url() {
    local port
    ensure_mariadb_installed
    if is_root; then
        port=$(start_mariadb_debian) || exit 1
    else
        port=$(start_mariadb_private) || exit 1
    fi
    printf 'mysql+pymysql://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$port" "$DB_NAME"
}

# ---------------------------------------------------------------------------------------------

main() {
    local pg=${RECURJOBS_TEST_POSTGRES_URL:-} my=${RECURJOBS_TEST_MYSQL_URL:-}
    if [[ -n $pg ]]; then
        log "RECURJOBS_TEST_POSTGRES_URL is set: using that server as it is"
    else
        pg=$(postgres_url) || exit 1
    fi
    if [[ -n $my ]]; then
        log "RECURJOBS_TEST_MYSQL_URL is set: using that server as it is"
    else
        my=$(mysql_url) || exit 1
    fi
    log "database URLs ready"
    printf 'export RECURJOBS_TEST_POSTGRES_URL=%q\n' "$pg"
    printf 'export RECURJOBS_TEST_MYSQL_URL=%q\n' "$my"
}

main "$@"
