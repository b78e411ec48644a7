//! The schema of a durus database in PostgreSQL and every statement
//! [`PgStorage`](super::PgStorage) sends, in one place (docs/POSTGRES.md
//! explains each).
//!
//! Statements with parameters are prepared once per connection. The few
//! sent as simple queries (several statements in one round trip) carry
//! only integers this process computed, formatted in.

/// The version of the schema below, kept in `durus_schema`.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// Makes `durus_schema` (the first table, so that it can be locked), run
/// before [`LOCK_SCHEMA`]. Two processes doing it at once may fail with a
/// unique violation: the loser retries.
pub(crate) const CREATE_SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS durus_schema (version integer NOT NULL)";

/// Serializes the rest of the schema creation between processes.
pub(crate) const LOCK_SCHEMA: &str = "LOCK TABLE durus_schema IN EXCLUSIVE MODE";

/// The schema version, when the schema was made.
pub(crate) const SELECT_SCHEMA_VERSION: &str = "SELECT version FROM durus_schema";

/// The tables, indexes and sequence (run once, under [`LOCK_SCHEMA`]).
///
/// - `durus_commit`: one row; `tid` is the last committed transaction id.
///   Its row lock (`SELECT ... FOR UPDATE`) is the commit lock.
/// - `durus_object`: the current record of each object; `data` is the
///   whole record as `record::pack` makes it, `refs` the oids it refers to
///   (for a pack that walks the graph in SQL), `tid` the transaction that
///   wrote it (indexed: the invalidations since a tid).
/// - `durus_removed`: oids a pack removed and the tid of that pack, so
///   that other clients learn of them as invalidations.
/// - `durus_oid_seq`: new oids, from 0 (the root), in blocks of
///   [`OID_BLOCK`]: value `v` stands for oids `v .. v + OID_BLOCK`.
pub(crate) const CREATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS durus_commit (
    id integer PRIMARY KEY CHECK (id = 0),
    tid bigint NOT NULL
);
INSERT INTO durus_commit (id, tid) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS durus_object (
    oid bigint PRIMARY KEY,
    tid bigint NOT NULL,
    data bytea NOT NULL,
    refs bigint[] NOT NULL
);
CREATE INDEX IF NOT EXISTS durus_object_tid ON durus_object (tid);
CREATE TABLE IF NOT EXISTS durus_removed (
    oid bigint PRIMARY KEY,
    tid bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS durus_removed_tid ON durus_removed (tid);
CREATE SEQUENCE IF NOT EXISTS durus_oid_seq AS bigint MINVALUE 0 START 0 INCREMENT 32;
";

/// Removes every table and the sequence of [`CREATE_SCHEMA`] and
/// `durus_schema`: the database holds no durus data afterwards (its next
/// `PgStorage` makes the schema again). For benchmarks and tests.
pub(crate) const DROP_SCHEMA: &str = "DROP TABLE IF EXISTS durus_object, durus_removed, \
     durus_commit, durus_schema; DROP SEQUENCE IF EXISTS durus_oid_seq";

/// Records the schema version (after [`CREATE_SCHEMA`]).
pub(crate) const INSERT_SCHEMA_VERSION: &str = "INSERT INTO durus_schema (version) VALUES ($1)";

/// The last committed tid.
pub(crate) const SELECT_TID: &str = "SELECT tid FROM durus_commit WHERE id = 0";

/// One record and the tid that wrote it.
pub(crate) const LOAD: &str = "SELECT tid, data FROM durus_object WHERE oid = $1";

/// Several records (also the current records of a resolution round).
pub(crate) const BULK_LOAD: &str = "SELECT oid, tid, data FROM durus_object WHERE oid = ANY($1)";

/// Several records (the first column true), and up to `$2` of the records
/// they refer to that were not asked for (false), in one statement: a
/// bulk load of a BTree node's children brings their children along.
pub(crate) const BULK_LOAD_WITH_REFS: &str = "
WITH asked AS (
    SELECT oid, tid, data, refs FROM durus_object WHERE oid = ANY($1)
)
SELECT oid, tid, data, true FROM asked
UNION ALL
(SELECT o.oid, o.tid, o.data, false FROM durus_object o
 WHERE o.oid = ANY(ARRAY(
     SELECT DISTINCT r FROM asked CROSS JOIN LATERAL unnest(asked.refs) AS r
     WHERE r <> ALL($1)))
 LIMIT $2)";

/// Whether the database holds no record.
pub(crate) const IS_EMPTY: &str = "SELECT NOT EXISTS (SELECT 1 FROM durus_object)";

/// Up to `$2` records and their refs with an oid above `$1`, in oid order
/// (a copy or a check of the whole database, page by page, by the primary key).
pub(crate) const RECORDS_AFTER: &str =
    "SELECT oid, data, refs FROM durus_object WHERE oid > $1 ORDER BY oid LIMIT $2";

/// Moves `durus_oid_seq` so that new oids come after the block holding
/// oid `$1` (never back): after records were copied in with their oids.
pub(crate) const RESERVE_OIDS_THROUGH: &str = "
SELECT setval('durus_oid_seq', GREATEST($1::bigint / 32 * 32,
    (SELECT CASE WHEN is_called THEN last_value ELSE -1 END FROM durus_oid_seq)))";

/// How many oids one value of `durus_oid_seq` stands for (its INCREMENT).
///
/// PostgreSQL WAL-logs a sequence once every 32 values, and a transaction
/// that does so must flush the WAL when it commits (an fsync): a block per
/// value makes that once every 1,024 oids rather than every 32.
pub(crate) const OID_BLOCK: u64 = 32;

/// `$1` blocks of [`OID_BLOCK`] new oids in one round trip.
pub(crate) const NEW_OIDS: &str =
    "SELECT nextval('durus_oid_seq') FROM generate_series(1, $1::integer)";

/// The last tid and every oid written or removed after tid `$1`, in one
/// statement, so from one snapshot.
pub(crate) const SYNC: &str = "
SELECT (SELECT tid FROM durus_commit WHERE id = 0),
       ARRAY(SELECT oid FROM durus_object WHERE tid > $1
             UNION SELECT oid FROM durus_removed WHERE tid > $1)";

/// Opens a commit's SQL transaction and takes the commit lock (a simple
/// query; its third statement returns the last tid): what a hub does
/// before it looks at its sessions. The commit is synchronous, whatever
/// the server's default: a commit is visible to others only once it is
/// durable (see [`FINISH_COMMIT`]).
pub(crate) const LOCK_COMMIT: &str = "BEGIN; SET LOCAL synchronous_commit TO on; \
     SELECT tid FROM durus_commit WHERE id = 0 FOR UPDATE";

/// Those of the oids `$1` that have no record (the references a commit
/// makes, checked in one statement).
pub(crate) const MISSING: &str = "SELECT k FROM unnest($1::bigint[]) AS k \
     WHERE NOT EXISTS (SELECT 1 FROM durus_object WHERE oid = k)";

/// The first round trip of a commit (a simple query, several statements):
/// opens the SQL transaction, takes the commit lock, then (a new snapshot,
/// taken after the lock was granted) reads the invalidations since
/// `last_tid`, with the current record (in hex) of those among `written`,
/// the oids this commit writes: what a resolution round would ask for.
pub(crate) fn begin_commit(last_tid: i64, written: &[i64]) -> String {
    use std::fmt::Write;
    let mut q = String::with_capacity(400 + 21 * written.len());
    let _ = write!(q, "{LOCK_COMMIT}; SELECT oid, CASE WHEN oid = ANY('{{");
    for (i, oid) in written.iter().enumerate() {
        if i > 0 {
            q.push(',');
        }
        let _ = write!(q, "{oid}");
    }
    let _ = write!(
        q,
        "}}'::bigint[]) THEN encode(data, 'hex') END \
         FROM durus_object WHERE tid > {last_tid} \
         UNION ALL SELECT oid, NULL FROM durus_removed WHERE tid > {last_tid}"
    );
    q
}

/// The bytes of lowercase or uppercase hex digits; `None` if any is not one.
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => {
                let hi = char::from(*hi).to_digit(16)?;
                let lo = char::from(*lo).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()
            }
            _ => None,
        })
        .collect()
}

/// Writes records at tid `$1` and makes `$1` the last tid, in one
/// statement: `$2` oids, `$3` records, the refs of record `i` are
/// `$4[$5[i]:$6[i]]` (an empty slice when it has none), and `$7[i]` says
/// that its oid is new (handed out by this client's oid sequence and
/// never written): those are inserted without the upsert's conflict
/// check, which costs the server about a third more per row.
pub(crate) const WRITE: &str = "
WITH r AS (
    SELECT * FROM unnest($2::bigint[], $3::bytea[], $5::integer[], $6::integer[], $7::boolean[])
        AS r(oid, data, lo, hi, new)
), inserted AS (
    INSERT INTO durus_object (oid, tid, data, refs)
    SELECT r.oid, $1, r.data, ($4::bigint[])[r.lo:r.hi] FROM r WHERE r.new
), updated AS (
    INSERT INTO durus_object (oid, tid, data, refs)
    SELECT r.oid, $1, r.data, ($4::bigint[])[r.lo:r.hi] FROM r WHERE NOT r.new
    ON CONFLICT (oid) DO UPDATE
        SET tid = EXCLUDED.tid, data = EXCLUDED.data, refs = EXCLUDED.refs
)
UPDATE durus_commit SET tid = $1 WHERE id = 0";

/// The rest of a small commit in one simple query: the records of
/// `batch` as literals in one upsert, the new last tid, COMMIT and the
/// WAL flush of [`FINISH_COMMIT`]. Only integers and hex digits made here
/// go into the text.
pub(crate) fn write_and_commit(tid: i64, batch: &super::commit::WriteBatch) -> String {
    use std::fmt::Write;
    let mut q = String::with_capacity(256 + 2 * batch.bytes + 48 * batch.oids.len());
    q.push_str("INSERT INTO durus_object (oid, tid, data, refs) VALUES ");
    for (i, (oid, record)) in batch.oids.iter().zip(&batch.records).enumerate() {
        if i > 0 {
            q.push(',');
        }
        let _ = write!(q, "({oid},{tid},decode('");
        for byte in record {
            q.push(hex_digit(byte >> 4));
            q.push(hex_digit(byte & 15));
        }
        q.push_str("','hex'),'{");
        let refs = batch.refs_of(i);
        for (j, r) in refs.iter().enumerate() {
            if j > 0 {
                q.push(',');
            }
            let _ = write!(q, "{r}");
        }
        q.push_str("}'::bigint[])");
    }
    let _ = write!(
        q,
        " ON CONFLICT (oid) DO UPDATE \
         SET tid = EXCLUDED.tid, data = EXCLUDED.data, refs = EXCLUDED.refs; \
         UPDATE durus_commit SET tid = {tid} WHERE id = 0; {FINISH_COMMIT}"
    );
    q
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

/// The last round trip of a commit. NOTIFY is delivered to the listeners
/// (see [`LISTEN`]) when the transaction commits. COMMIT returns once the
/// WAL is flushed past it, and only then is the commit visible to others
/// and the lock released. (An asynchronous COMMIT followed by a synchronous
/// flush would free the lock sooner, but others could see a commit that a
/// crash then loses; a client that reconnects after the crash keeps the
/// tid it saw, and the next commit, made again with that tid, would not
/// reach it as an invalidation: a lost update.)
pub(crate) const FINISH_COMMIT: &str = "NOTIFY durus_commit; COMMIT";

/// What a session that waits for other processes' commits runs once: every
/// commit and every pack that removed records sends `NOTIFY durus_commit`
/// in its transaction.
pub(crate) const LISTEN: &str = "LISTEN durus_commit";

/// Leaves a commit or a pack that will not happen.
pub(crate) const ROLLBACK: &str = "ROLLBACK";

/// A pack's first round trip: no statement timeout (a pack walks the
/// whole database), a synchronous commit (as every commit: see
/// [`FINISH_COMMIT`]), then the commit lock (no commit runs during a
/// pack); its fourth statement returns the last tid.
pub(crate) const BEGIN_PACK: &str = "BEGIN; SET LOCAL statement_timeout TO 0; \
     SET LOCAL synchronous_commit TO on; \
     SELECT tid FROM durus_commit WHERE id = 0 FOR UPDATE";

/// Mark and sweep in one statement: the oids reachable from the root by
/// following `refs` (a recursive walk), the deletion of every other
/// record, and the removed oids recorded at tid `$1`. Its snapshot is
/// taken after the commit lock was granted, so it sees every commit.
pub(crate) const PACK: &str = "
WITH RECURSIVE reach(oid) AS (
    SELECT oid FROM durus_object WHERE oid = 0
    UNION
    SELECT ref FROM reach
    JOIN durus_object o ON o.oid = reach.oid
    CROSS JOIN LATERAL unnest(o.refs) AS ref
), gone AS (
    DELETE FROM durus_object o
    WHERE NOT EXISTS (SELECT 1 FROM reach WHERE reach.oid = o.oid)
    RETURNING o.oid
)
INSERT INTO durus_removed (oid, tid) SELECT oid, $1 FROM gone
ON CONFLICT (oid) DO UPDATE SET tid = EXCLUDED.tid";

/// Ends a pack that removed records: its tid becomes the last tid, and
/// the removals recorded by packs before the previous one are forgotten
/// (`durus_removed` holds at most two packs' worth: a client that has not
/// synced across two packs may keep a copy of an object no one can reach,
/// which the reference check keeps out of new commits).
pub(crate) fn finish_pack(tid: i64) -> String {
    format!(
        "DELETE FROM durus_removed WHERE tid < \
         (SELECT max(tid) FROM durus_removed WHERE tid < {tid}); \
         UPDATE durus_commit SET tid = {tid} WHERE id = 0; NOTIFY durus_commit; COMMIT"
    )
}
