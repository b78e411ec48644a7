//! A deterministic simulation of many clients on one storage, checked after
//! every step against a model of what was acknowledged.
//!
//! One seed drives a whole history: which client acts, what it reads and
//! writes (plain objects, `#[merge(sum)]` counters, `#[merge(union)]` sets,
//! a small `BTree` whose leaves split, join and borrow often, read-modify-
//! writes of a few hot keys of that tree and of a `PersistentDict`, and
//! per-key counters in a `BTree` and a `PersistentDict` with
//! `per_key::Sum`), when it
//! commits, aborts or syncs in mid-transaction, which guard it holds across
//! those, when its cache shrinks, when a pack runs, and which storage
//! operation fails next (`end`, the durability wait, `sync`; for a file,
//! a write or an fsync of the file itself). The clients share one thread,
//! so a history replays exactly from its seed.
//!
//! The model holds what was acknowledged. After every step a checker
//! client compares the storage with it: every acknowledged commit present
//! exactly once, every counter the sum of its acknowledged deltas, every
//! set and the tree equal to the model, the tree's invariants intact, and
//! nothing left by an operation that returned `Err`. A plain object's
//! write, and each key a transaction changed in the tree or the plain map,
//! is also checked to have been made from the value last acknowledged (no
//! lost update: two clients that both read a key and wrote it must not
//! both be acknowledged). A commit whose outcome is unknown (an
//! fsync failed, the server went away) is resolved by its client's journal
//! object, which every writing transaction sets to its own number.
//!
//! The two-hub variant (`postgreshubs`) runs two hubs, as two servers,
//! over one PostgreSQL database, clients alternating between them; its
//! faults also break the PostgreSQL connections (between steps, and
//! inside a commit), and now and then a commit that writes a plain object
//! lets another server's client increment that object from inside its
//! commit exchange while another session of its hub syncs (the
//! interleaving that lost updates when a hub checked commits against its
//! own sync point: seed 4000000 finds it at step 33 on that code).
//!
//! CI runs a fixed budget. `DURUS_SIM_SECONDS=N` runs each variant for N
//! seconds instead; `DURUS_SIM_SEED=S` (with `DURUS_SIM_VARIANT=memory`,
//! `file`, `server`, `postgres` or `postgreshubs`) replays one history and prints its steps.

mod collections_common;
mod support;

use collections_common::Rng;
use durus_core::storage::file::{FileIo, IoWrapper};
use durus_core::storage::{FileOptions, FileStorage, FsyncPolicy};
use durus_core::{
    per_key, BTree, Connection, Error, Hub, MemoryStorage, MergeConflict, PRef, Persistent,
    PersistentDict, Storage,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};
use support::faults::{Faults, Faulty};

const PLAINS: usize = 3;
const COUNTERS: usize = 2;
const SETS: usize = 2;
/// Keys of the tree are drawn from 0..KEYS; it holds about TREE_SIZE of
/// them (two to four leaves), so that splits, joins and borrows happen
/// often, with gaps between keys where another client's insert can land.
const KEYS: u32 = 400;
const TREE_SIZE: u64 = 48;
const STEPS: usize = 120;
/// Keys of the map and of the per-key counters: few, so that two clients
/// often change the same one.
const HOT_KEYS: u64 = 4;

/// Merge functions fail on this value, and panic on the next.
const FAILS: u8 = 1;
const PANICS: u8 = 2;
const PANIC_TEXT: &str = "simulated panic in a merge function";

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
#[persistent(class = "sim.Cell")]
struct Cell {
    value: i64,
}

fn touchy(ours: &u8, stored: &u8, initial: &u8) -> Result<u8, MergeConflict> {
    if ours == initial {
        return Ok(*stored);
    }
    match *ours {
        FAILS => Err(MergeConflict::new(
            "touchy",
            "refused by the merge function",
        )),
        PANICS => panic!("{PANIC_TEXT}"),
        _ => Ok(*ours),
    }
}

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
#[persistent(class = "sim.Counter")]
struct Counter {
    #[merge(sum)]
    n: i64,
    /// Not in the model: it decides whether a merge fails or panics.
    #[merge(with = touchy)]
    touchy: u8,
}

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
#[persistent(class = "sim.Tags")]
struct Tags {
    #[merge(union)]
    tags: BTreeSet<u32>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "sim.Root")]
struct Root {
    plains: Vec<PRef<Cell>>,
    counters: Vec<PRef<Counter>>,
    sets: Vec<PRef<Tags>>,
    tree: BTree<u32, u64>,
    journals: Vec<PRef<Cell>>,
    map: PRef<PersistentDict<u32, i64>>,
    map_counts: PRef<PersistentDict<u32, i64, per_key::Sum>>,
    tree_counts: BTree<u32, i64, per_key::Sum>,
}

/// The handles a transaction works with, read from the root.
#[derive(Clone)]
struct Handles {
    root: PRef<Root>,
    plains: Vec<PRef<Cell>>,
    counters: Vec<PRef<Counter>>,
    sets: Vec<PRef<Tags>>,
    tree: BTree<u32, u64>,
    journals: Vec<PRef<Cell>>,
    map: PRef<PersistentDict<u32, i64>>,
    map_counts: PRef<PersistentDict<u32, i64, per_key::Sum>>,
    tree_counts: BTree<u32, i64, per_key::Sum>,
}

fn handles(conn: &Connection) -> durus_core::Result<Handles> {
    let root: PRef<Root> = conn.root()?;
    let r = root.read()?;
    let h = Handles {
        root: root.clone(),
        plains: r.plains.clone(),
        counters: r.counters.clone(),
        sets: r.sets.clone(),
        tree: r.tree.clone(),
        journals: r.journals.clone(),
        map: r.map.clone(),
        map_counts: r.map_counts.clone(),
        tree_counts: r.tree_counts.clone(),
    };
    drop(r);
    Ok(h)
}

/// What was acknowledged.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    plains: Vec<i64>,
    counters: Vec<i64>,
    sets: Vec<BTreeSet<u32>>,
    tree: BTreeMap<u32, u64>,
    journals: Vec<i64>,
    map: BTreeMap<u32, i64>,
    map_counts: BTreeMap<u32, i64>,
    tree_counts: BTreeMap<u32, i64>,
}

/// One change a transaction made, to apply to the model if it commits.
#[derive(Debug, Clone)]
enum Effect {
    /// Plain object `k` set to `new`, computed from `read`.
    Plain {
        k: usize,
        read: i64,
        new: i64,
    },
    Count(usize, i64),
    TagAdd(usize, u32),
    TagRemove(usize, u32),
    /// Tree key set (`Some`) or removed (`None`), from the value `first`
    /// this transaction saw.
    Tree {
        key: u32,
        first: Option<u64>,
        last: Option<u64>,
    },
    /// Map key likewise.
    Map {
        key: u32,
        first: Option<i64>,
        last: Option<i64>,
    },
    /// A per-key counter of the map (`false`) or the tree (`true`) moved.
    KeyCount {
        tree: bool,
        key: u32,
        delta: i64,
    },
    Journal(usize, i64),
}

impl Model {
    fn apply(&mut self, effects: &[Effect]) -> Result<(), String> {
        for e in effects {
            match *e {
                Effect::Plain { k, read, new } => {
                    if self.plains[k] != read {
                        return Err(format!(
                            "lost update: plain {k} was written from {read}, but {} was acknowledged",
                            self.plains[k]
                        ));
                    }
                    self.plains[k] = new;
                }
                Effect::Count(k, d) => self.counters[k] += d,
                Effect::TagAdd(k, t) => {
                    self.sets[k].insert(t);
                }
                Effect::TagRemove(k, t) => {
                    self.sets[k].remove(&t);
                }
                Effect::Tree { key, first, last } => {
                    set_from(&mut self.tree, key, first, last).map_err(|e| format!("tree {e}"))?;
                }
                Effect::Map { key, first, last } => {
                    set_from(&mut self.map, key, first, last).map_err(|e| format!("map {e}"))?;
                }
                Effect::KeyCount { tree, key, delta } => {
                    let m = if tree {
                        &mut self.tree_counts
                    } else {
                        &mut self.map_counts
                    };
                    *m.entry(key).or_default() += delta;
                }
                Effect::Journal(i, seq) => self.journals[i] = seq,
            }
        }
        Ok(())
    }
}

/// Sets (or removes) `key` in a model map, checking the write was made from
/// the value last acknowledged.
fn set_from<V: Copy + PartialEq + std::fmt::Debug>(
    map: &mut BTreeMap<u32, V>,
    key: u32,
    first: Option<V>,
    last: Option<V>,
) -> Result<(), String> {
    let acknowledged = map.get(&key).copied();
    if acknowledged != first {
        return Err(format!(
            "lost update: key {key} was written from {first:?}, but {acknowledged:?} was acknowledged"
        ));
    }
    match last {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
    Ok(())
}

/// What a client reads of the whole database.
fn read_all(conn: &Connection) -> durus_core::Result<Model> {
    let h = handles(conn)?;
    let mut m = Model::default();
    for p in &h.plains {
        m.plains.push(p.read()?.value);
    }
    for c in &h.counters {
        m.counters.push(c.read()?.n);
    }
    for s in &h.sets {
        m.sets.push(s.read()?.tags.clone());
    }
    h.tree.verify()?;
    for entry in h.tree.iter() {
        let (k, v) = entry?;
        m.tree.insert(k, v);
    }
    if h.tree.len()? != m.tree.len() as u64 {
        return Err(Error::NeedsAbort);
    }
    for j in &h.journals {
        m.journals.push(j.read()?.value);
    }
    m.map = h.map.read()?.as_map().clone();
    m.map_counts = h.map_counts.read()?.as_map().clone();
    h.tree_counts.verify()?;
    for entry in h.tree_counts.iter() {
        let (k, v) = entry?;
        m.tree_counts.insert(k, v);
    }
    Ok(m)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Memory,
    File,
    Server,
    /// Each client with its own `PgStorage` on one database: no hub.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
    /// Two hubs (two servers) over one database, each with several
    /// clients; faults also break the PostgreSQL connections, between
    /// steps and inside a commit.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    PostgresHubs,
}

/// Fails the next write or fsync of a file when armed.
struct FaultyFile {
    inner: Arc<dyn FileIo>,
    faults: Arc<FileFaults>,
}

#[derive(Default)]
struct FileFaults {
    write: AtomicBool,
    sync: AtomicBool,
    fired: AtomicBool,
}

impl FileFaults {
    fn take(&self, flag: &AtomicBool) -> bool {
        let hit = flag.swap(false, Ordering::SeqCst);
        if hit {
            self.fired.store(true, Ordering::SeqCst);
        }
        hit
    }
}

impl FileIo for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn map_source(&self) -> Option<&std::fs::File> {
        self.inner.map_source()
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.faults.take(&self.faults.write) {
            return Err(io::Error::other("simulated write failure"));
        }
        self.inner.write_all_at(buf, offset)
    }

    fn sync(&self, data_only: bool) -> io::Result<()> {
        self.inner.sync(data_only)?;
        if self.faults.take(&self.faults.sync) {
            return Err(io::Error::other("simulated fsync failure"));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len()
    }
}

/// One client: its connection and the transaction under way.
struct Client {
    conn: Connection,
    /// Handles read from the root in this transaction.
    handles: Option<Handles>,
    effects: Vec<Effect>,
    /// Tree keys this transaction touched: the value it first saw, the
    /// value it left. Only a difference is a change (merges are three-way).
    tree_net: BTreeMap<u32, (Option<u64>, Option<u64>)>,
    /// The plain map's keys likewise.
    map_net: BTreeMap<u32, (Option<i64>, Option<i64>)>,
    /// Tags likewise: present when first seen, present when left.
    tag_net: BTreeMap<(usize, u32), (bool, bool)>,
    /// The number of this client's next writing transaction.
    seq: i64,
}

impl Client {
    fn new(conn: Connection) -> Client {
        Client {
            conn,
            handles: None,
            effects: Vec::new(),
            tree_net: BTreeMap::new(),
            map_net: BTreeMap::new(),
            tag_net: BTreeMap::new(),
            seq: 1,
        }
    }

    /// The transaction is over: forget what it did.
    fn clear(&mut self) {
        self.handles = None;
        self.effects.clear();
        self.tree_net.clear();
        self.map_net.clear();
        self.tag_net.clear();
    }

    fn changed_anything(&self) -> bool {
        !self.effects.is_empty()
            || self.tree_net.values().any(|(a, b)| a != b)
            || self.map_net.values().any(|(a, b)| a != b)
            || self.tag_net.values().any(|(a, b)| a != b)
    }

    /// What the transaction changed, to apply to the model if it commits.
    fn take_effects(&mut self) -> Vec<Effect> {
        let mut out = std::mem::take(&mut self.effects);
        for (key, (first, last)) in std::mem::take(&mut self.tree_net) {
            if first != last {
                out.push(Effect::Tree { key, first, last });
            }
        }
        for (key, (first, last)) in std::mem::take(&mut self.map_net) {
            if first != last {
                out.push(Effect::Map { key, first, last });
            }
        }
        for ((k, t), (first, last)) in std::mem::take(&mut self.tag_net) {
            if first != last {
                out.push(if last {
                    Effect::TagAdd(k, t)
                } else {
                    Effect::TagRemove(k, t)
                });
            }
        }
        out
    }
}

/// The application name of the meddler's sessions (the breaker spares them).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
const MEDDLER_APP: &str = "durus-sim-meddler";

/// What a meddler's commit gives back: the value it read and wrote (or
/// why it did not commit).
type MeddlerOutcome = durus_core::Result<(i64, i64)>;

/// A meddler's commit under way.
struct MeddlerRun {
    k: usize,
    /// Its outcome, when it came before the exchange went on.
    early: Option<MeddlerOutcome>,
    done: std::sync::mpsc::Receiver<MeddlerOutcome>,
}

/// Another server's client that commits from inside a client's commit
/// exchange (the two-hub variant): the interleaving that lost updates
/// when a hub checked commits against its own sync point.
#[derive(Default)]
struct Meddler {
    /// The plain object to increment in the next exchange.
    armed: std::sync::Mutex<Option<usize>>,
    /// The other server it is a client of.
    hub: Option<Hub>,
    running: std::sync::Mutex<Option<MeddlerRun>>,
}

impl Meddler {
    /// Inside an exchange on `hub`: increments the armed plain object
    /// through the other server (in a thread: with a correct lock it waits
    /// for this exchange), gives it a moment, then syncs another session
    /// of `hub`.
    fn meddle(&self, hub: &Hub) {
        let Some(k) = self.armed.lock().expect("armed").take() else {
            return;
        };
        let Some(other) = self.hub.clone() else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let conn = Connection::new(other.storage());
            let out = (|| -> durus_core::Result<(i64, i64)> {
                let h = handles(&conn)?;
                let read = h.plains[k].read()?.value;
                h.plains[k].write()?.value = read + 1;
                conn.commit()?;
                Ok((read, read + 1))
            })();
            let _ = tx.send(out);
        });
        let early = rx.recv_timeout(Duration::from_millis(300)).ok();
        let _ = hub.session().sync();
        *self.running.lock().expect("running") = Some(MeddlerRun { k, early, done: rx });
    }
}

/// A client's storage in the two-hub variant: its commit handler lets the
/// meddler in once the exchange is open.
struct Meddled {
    inner: durus_core::hub::SharedStorage,
    meddler: Arc<Meddler>,
}

struct MeddledHandler<'a> {
    inner: &'a mut dyn durus_core::storage::CommitHandler,
    meddler: &'a Meddler,
    hub: &'a Hub,
}

impl durus_core::storage::CommitHandler for MeddledHandler<'_> {
    fn invalidated(
        &mut self,
        oids: &[durus_core::Oid],
    ) -> durus_core::Result<Vec<durus_core::Oid>> {
        self.meddler.meddle(self.hub);
        self.inner.invalidated(oids)
    }

    fn resolve(
        &mut self,
        current: Vec<(durus_core::Oid, Vec<u8>)>,
    ) -> durus_core::Result<Vec<(durus_core::Oid, Vec<u8>)>> {
        self.inner.resolve(current)
    }
}

impl Storage for Meddled {
    fn load(&mut self, oid: durus_core::Oid) -> durus_core::Result<Vec<u8>> {
        self.inner.load(oid)
    }
    fn bulk_load(&mut self, oids: &[durus_core::Oid]) -> durus_core::Result<Vec<Vec<u8>>> {
        self.inner.bulk_load(oids)
    }
    fn new_oid(&mut self) -> durus_core::Result<durus_core::Oid> {
        self.inner.new_oid()
    }
    fn begin(&mut self) {
        self.inner.begin()
    }
    fn store(&mut self, oid: durus_core::Oid, record: Vec<u8>) -> durus_core::Result<()> {
        self.inner.store(oid, record)
    }
    fn end(
        &mut self,
        handler: &mut dyn durus_core::storage::CommitHandler,
    ) -> durus_core::Result<durus_core::storage::Durability> {
        let hub = self.inner.session().hub().clone();
        let mut meddled = MeddledHandler {
            inner: handler,
            meddler: &self.meddler,
            hub: &hub,
        };
        self.inner.end(&mut meddled)
    }
    fn sync(&mut self) -> durus_core::Result<Vec<durus_core::Oid>> {
        self.inner.sync()
    }
    fn pack(&mut self) -> durus_core::Result<()> {
        self.inner.pack()
    }
    fn commit_lock(&mut self) -> Option<Arc<dyn durus_core::storage::CommitLock>> {
        self.inner.commit_lock()
    }
    fn wait_for_change(
        &mut self,
        timeout: std::time::Duration,
        interest: Option<&[durus_core::Oid]>,
    ) -> durus_core::Result<bool> {
        self.inner.wait_for_change(timeout, interest)
    }
    fn change_notifier(&mut self) -> Option<Arc<dyn durus_core::storage::ChangeNotifier>> {
        self.inner.change_notifier()
    }
    fn missing(&mut self, oids: &[durus_core::Oid]) -> durus_core::Result<Vec<durus_core::Oid>> {
        self.inner.missing(oids)
    }
}

/// The storage and the server under the clients.
struct Stack {
    hub: Hub,
    faults: Arc<Faults>,
    server: Option<support::server::InProcess>,
    /// The database of the PostgreSQL variant (then `hub` is unused).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pg_url: Option<String>,
    /// The second hub of the two-hub variant (clients alternate).
    second: Option<Hub>,
    /// The two-hub variant's commits made from inside a client's commit
    /// exchange.
    meddler: Option<Arc<Meddler>>,
    /// How many clients connected (which hub the next one gets).
    connected: std::sync::atomic::AtomicUsize,
    /// Keeps the PostgreSQL cluster running while the history runs.
    #[cfg(feature = "postgres")]
    _cluster: Option<Arc<support::pg::Cluster>>,
}

/// One history.
struct Sim {
    variant: Variant,
    rng: Rng,
    stack: Stack,
    checker: Connection,
    clients: Vec<Client>,
    model: Model,
    file_faults: Arc<FileFaults>,
    scratch: Option<support::Scratch>,
    trace: bool,
    /// Figures of the run, summed over histories.
    stats: Stats,
    /// A meddler's commit acknowledged after the exchange it ran in, to
    /// apply after that exchange's effects.
    late_meddler: Option<(usize, MeddlerOutcome)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    histories: u64,
    steps: u64,
    commits: u64,
    conflicts: u64,
    unknown: u64,
    faults: u64,
    packs: u64,
    restarts: u64,
    /// Objects merged at commit (counted by the clients' connections).
    merges: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.histories += o.histories;
        self.steps += o.steps;
        self.commits += o.commits;
        self.conflicts += o.conflicts;
        self.unknown += o.unknown;
        self.faults += o.faults;
        self.packs += o.packs;
        self.restarts += o.restarts;
        self.merges += o.merges;
    }
}

fn open_file(path: &std::path::Path, faults: &Arc<FileFaults>) -> FileStorage {
    let faults = faults.clone();
    let wrapper: IoWrapper = Arc::new(move |inner| {
        Arc::new(FaultyFile {
            inner,
            faults: faults.clone(),
        }) as Arc<dyn FileIo>
    });
    let options = FileOptions::new()
        .fsync(FsyncPolicy::Always)
        .repair(true)
        .wrap_io(wrapper);
    FileStorage::open_with(path, options).expect("open the file")
}

fn stack(variant: Variant, scratch: &Option<support::Scratch>, ff: &Arc<FileFaults>) -> Stack {
    #[cfg(feature = "postgres")]
    if variant == Variant::Postgres {
        let cluster = support::pg::cluster().expect("PostgreSQL for the simulation");
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let url = cluster.new_database(&format!("sim_{n}"));
        return Stack {
            hub: Hub::new(MemoryStorage::new()),
            faults: Arc::new(Faults::default()),
            server: None,
            pg_url: Some(url),
            second: None,
            meddler: None,
            connected: Default::default(),
            _cluster: Some(cluster),
        };
    }
    #[cfg(feature = "postgres")]
    if variant == Variant::PostgresHubs {
        use durus_core::storage::PgStorage;
        let cluster = support::pg::cluster().expect("PostgreSQL for the simulation");
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let db = format!("simhubs_{n}");
        let url = cluster.new_database(&db);
        let faults = Arc::new(Faults::default());
        let admin = std::sync::Mutex::new(cluster.admin());
        *faults.breaker.lock().expect("breaker") = Some(Box::new(move || {
            // Ends every session on the database (the checker's too).
            let _ = admin.lock().expect("admin").execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2",
                &[&db, &MEDDLER_APP],
            );
        }));
        let hub = |url: &str| {
            let pg = PgStorage::connect(url).expect("connect");
            Hub::new(Faulty::sharing(pg, faults.clone()))
        };
        // A third server's client, spared by the faults and the breaker.
        let third =
            PgStorage::connect(&format!("{url}?application_name={MEDDLER_APP}")).expect("connect");
        let meddler = Meddler {
            hub: Some(Hub::new(third)),
            ..Meddler::default()
        };
        return Stack {
            hub: hub(&url),
            second: Some(hub(&url)),
            meddler: Some(Arc::new(meddler)),
            faults,
            server: None,
            pg_url: Some(url),
            connected: Default::default(),
            _cluster: Some(cluster),
        };
    }
    let boxed: Box<dyn Storage> = match variant {
        Variant::File => {
            let path = scratch.as_ref().expect("scratch").path("sim.durus");
            let (s, faults) = Faulty::new(open_file(&path, ff));
            return finish_stack(Hub::new(s), faults, variant);
        }
        _ => Box::new(MemoryStorage::new()),
    };
    let (s, faults) = Faulty::new(boxed);
    finish_stack(Hub::new(s), faults, variant)
}

fn finish_stack(hub: Hub, faults: Arc<Faults>, variant: Variant) -> Stack {
    let server = (variant == Variant::Server)
        .then(|| support::server::InProcess::with_hub(hub.clone(), |_| {}));
    Stack {
        hub,
        faults,
        server,
        pg_url: None,
        second: None,
        meddler: None,
        connected: Default::default(),
        #[cfg(feature = "postgres")]
        _cluster: None,
    }
}

impl Stack {
    /// A client's connection: through the server, straight to PostgreSQL
    /// (with the fault switches), or on the hub.
    fn connect(&self) -> Connection {
        let n = self.connected.fetch_add(1, Ordering::Relaxed);
        if let (Some(second), Some(meddler)) = (&self.second, &self.meddler) {
            let hub = if n.is_multiple_of(2) {
                &self.hub
            } else {
                second
            };
            return Connection::new(Meddled {
                inner: hub.storage(),
                meddler: meddler.clone(),
            });
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = &self.pg_url {
            let pg = durus_core::storage::PgStorage::connect(url).expect("connect");
            return Connection::new(Faulty::sharing(pg, self.faults.clone()));
        }
        match &self.server {
            Some(s) => Connection::connect(&s.addr()).expect("connect"),
            None => Connection::new(self.hub.storage()),
        }
    }

    /// The checker's connection: no faults.
    fn checker(&self) -> Connection {
        #[cfg(feature = "postgres")]
        if let Some(url) = &self.pg_url {
            let pg = durus_core::storage::PgStorage::connect(url).expect("connect");
            return Connection::new(pg);
        }
        Connection::new(self.hub.storage())
    }
}

impl Sim {
    fn new(variant: Variant, seed: u64, trace: bool) -> Sim {
        let mut rng = Rng::new(seed);
        let scratch = (variant == Variant::File).then(|| support::Scratch::new("sim"));
        let file_faults = Arc::new(FileFaults::default());
        let stack = stack(variant, &scratch, &file_faults);
        let n_clients = 2 + rng.below(3) as usize;
        let setup = stack.checker();
        let root: PRef<Root> = setup.root().expect("root");
        {
            let mut r = root.write().expect("write root");
            r.plains = (0..PLAINS).map(|_| PRef::new(Cell::default())).collect();
            r.counters = (0..COUNTERS).map(|_| PRef::default()).collect();
            r.sets = (0..SETS).map(|_| PRef::default()).collect();
            r.journals = (0..n_clients).map(|_| PRef::default()).collect();
        }
        setup.commit().expect("setup commit");
        drop(setup);
        let model = Model {
            plains: vec![0; PLAINS],
            counters: vec![0; COUNTERS],
            sets: vec![BTreeSet::new(); SETS],
            tree: BTreeMap::new(),
            journals: vec![0; n_clients],
            ..Model::default()
        };
        let clients = (0..n_clients)
            .map(|_| Client::new(stack.connect()))
            .collect();
        let checker = stack.checker();
        Sim {
            variant,
            rng,
            stack,
            checker,
            clients,
            model,
            file_faults,
            scratch,
            trace,
            stats: Stats {
                histories: 1,
                ..Stats::default()
            },
            late_meddler: None,
        }
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{}", what());
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    /// Runs the history; `Err` describes the first broken promise.
    fn run(&mut self) -> Result<(), String> {
        for step in 0..STEPS {
            self.stats.steps += 1;
            let i = self.rng.below(self.clients.len() as u64) as usize;
            self.step(step, i)?;
            self.check(step)?;
        }
        self.stats.merges += self
            .clients
            .iter()
            .map(|c| c.conn.merge_count())
            .sum::<u64>();
        self.stats.faults += self.stack.faults.fired.load(Ordering::SeqCst) as u64;
        Ok(())
    }

    /// The client's handles for this transaction, read from the root once.
    fn handles(&mut self, i: usize) -> durus_core::Result<Handles> {
        if let Some(h) = &self.clients[i].handles {
            return Ok(h.clone());
        }
        let h = handles(&self.clients[i].conn)?;
        self.clients[i].handles = Some(h.clone());
        Ok(h)
    }

    fn step(&mut self, step: usize, i: usize) -> Result<(), String> {
        let roll = self.rng.below(100);
        let out = match roll {
            0..=7 => self.op_plain(i),
            8..=17 => self.op_counter(i),
            18..=25 => self.op_tags(i),
            26..=37 => self.op_tree(i),
            38..=41 => self.op_tree_rmw(i),
            42..=45 => self.op_map_rmw(i),
            46..=49 => self.op_key_count(i),
            50..=51 => self.op_replace(i),
            52..=71 => return self.boundary(step, i, Boundary::Commit),
            72..=77 => return self.boundary(step, i, Boundary::Abort),
            78..=82 => return self.boundary(step, i, Boundary::Sync),
            83..=85 => {
                let size = if self.chance(50) {
                    1 + self.rng.below(4)
                } else {
                    1000
                };
                self.log(|| format!("{step}: client {i} cache size {size}"));
                self.clients[i].conn.set_cache_size(size as usize);
                Ok(())
            }
            86..=87 => return self.pack(step, i),
            88..=91 => {
                self.arm_fault(step);
                Ok(())
            }
            _ => self.op_read(i),
        };
        match out {
            Ok(()) => Ok(()),
            Err(e) => self.failed_op(step, i, e),
        }
    }

    /// An operation inside a transaction failed: the transaction is over.
    fn failed_op(&mut self, step: usize, i: usize, e: Error) -> Result<(), String> {
        self.log(|| format!("{step}: client {i} op failed: {e}"));
        match e {
            Error::Conflict(_) | Error::NeedsAbort => {
                self.stats.conflicts += 1;
                self.abort(step, i)
            }
            Error::Borrowed(_) => Err(format!("step {step}: Borrowed with no guard held: {e}")),
            _ => self.abort(step, i),
        }
    }

    fn op_read(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let k = self.rng.below(PLAINS as u64) as usize;
        h.plains[k].read()?;
        let lo = self.rng.below(KEYS as u64) as u32;
        let mut last = None;
        for entry in h.tree.range(lo..lo + 60) {
            let (key, _) = entry?;
            if last.is_some_and(|l| l >= key) {
                return Err(Error::Conflict(durus_core::ConflictError {
                    kind: durus_core::ConflictKind::Read,
                    oids: Vec::new(),
                    details: Vec::new(),
                }));
            }
            last = Some(key);
        }
        Ok(())
    }

    fn op_plain(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let k = self.rng.below(PLAINS as u64) as usize;
        let delta = 1 + self.rng.below(9) as i64;
        let read = h.plains[k].read()?.value;
        h.plains[k].write()?.value = read + delta;
        self.clients[i].effects.push(Effect::Plain {
            k,
            read,
            new: read + delta,
        });
        Ok(())
    }

    fn op_counter(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let k = self.rng.below(COUNTERS as u64) as usize;
        let delta = self.rng.below(21) as i64 - 10;
        let touch = self.chance(10).then(|| self.rng.below(4) as u8);
        {
            let mut c = h.counters[k].write()?;
            c.n += delta;
            if let Some(t) = touch {
                c.touchy = t;
            }
        }
        self.clients[i].effects.push(Effect::Count(k, delta));
        Ok(())
    }

    fn op_tags(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let k = self.rng.below(SETS as u64) as usize;
        let t = self.rng.below(12) as u32;
        let present = h.sets[k].read()?.tags.contains(&t);
        let mut s = h.sets[k].write()?;
        if present {
            s.tags.remove(&t);
        } else {
            s.tags.insert(t);
        }
        let net = self.clients[i]
            .tag_net
            .entry((k, t))
            .or_insert((present, present));
        net.1 = !present;
        Ok(())
    }

    fn op_tree(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let n = 1 + self.rng.below(4);
        for _ in 0..n {
            let mut key = self.rng.below(KEYS as u64) as u32;
            if self.chance(50) {
                // Next to a key that is there: where a separator may be.
                if let Some((k, _)) = h.tree.range(key..).next().transpose()? {
                    key = if self.chance(50) {
                        k.saturating_sub(1)
                    } else {
                        k + 1
                    };
                }
            }
            // Keep the tree near a few leaves: insert when small, remove when large.
            let size = h.tree.len()?;
            let insert = self.rng.below(2 * TREE_SIZE) >= size.min(2 * TREE_SIZE - 1);
            if !insert {
                // Remove a key that is there: the next one at or after `key`.
                let next = h.tree.range(key..).next().transpose()?;
                match next.or(h.tree.first()?) {
                    Some((k, _)) => key = k,
                    None => continue,
                }
            }
            let (before, after) = if insert {
                let v = self.rng.next_u64() % 1000;
                (h.tree.insert(key, v)?, Some(v))
            } else {
                (h.tree.remove(&key)?, None)
            };
            let net = self.clients[i]
                .tree_net
                .entry(key)
                .or_insert((before, before));
            net.1 = after;
        }
        Ok(())
    }

    /// A read-modify-write of a hot key of the tree: both sides doing it
    /// is a conflict (the default per-key rule).
    fn op_tree_rmw(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let key = self.rng.below(HOT_KEYS) as u32 * 100 + 50;
        let delta = 1 + self.rng.below(9);
        let read = h.tree.get(&key)?;
        let after = match read {
            Some(_) if self.chance(20) => {
                h.tree.remove(&key)?;
                None
            }
            _ => {
                let v = read.unwrap_or(0) + delta;
                h.tree.insert(key, v)?;
                Some(v)
            }
        };
        let net = self.clients[i].tree_net.entry(key).or_insert((read, read));
        net.1 = after;
        Ok(())
    }

    /// A read-modify-write of a key of the plain map.
    fn op_map_rmw(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let key = self.rng.below(HOT_KEYS) as u32;
        let delta = 1 + self.rng.below(9) as i64;
        let read = h.map.read()?.get(&key).copied();
        let after = if read.is_some() && self.chance(20) {
            None
        } else {
            Some(read.unwrap_or(0) + delta)
        };
        {
            let mut m = h.map.write()?;
            match after {
                Some(v) => m.insert(key, v),
                None => m.remove(&key),
            };
        }
        let net = self.clients[i].map_net.entry(key).or_insert((read, read));
        net.1 = after;
        Ok(())
    }

    /// An increment of a per-key counter, read and written back, in the
    /// map or the tree: concurrent ones add up.
    fn op_key_count(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let key = self.rng.below(HOT_KEYS) as u32;
        let delta = self.rng.below(21) as i64 - 10;
        let tree = self.chance(50);
        if tree {
            let n = h.tree_counts.get(&key)?.unwrap_or(0);
            h.tree_counts.insert(key, n + delta)?;
        } else {
            *h.map_counts.write()?.entry(key).or_default() += delta;
        }
        self.clients[i]
            .effects
            .push(Effect::KeyCount { tree, key, delta });
        Ok(())
    }

    /// Replaces a plain object by a new one (the old one becomes garbage
    /// for the next pack).
    fn op_replace(&mut self, i: usize) -> durus_core::Result<()> {
        let h = self.handles(i)?;
        let k = self.rng.below(PLAINS as u64) as usize;
        let read = h.plains[k].read()?.value;
        let fresh = PRef::new(Cell { value: read + 100 });
        h.root.write()?.plains[k] = fresh.clone();
        let mut h2 = h.clone();
        h2.plains[k] = fresh;
        self.clients[i].handles = Some(h2);
        self.clients[i].effects.push(Effect::Plain {
            k,
            read,
            new: read + 100,
        });
        Ok(())
    }

    fn arm_fault(&mut self, step: usize) {
        let f = &self.stack.faults;
        let which = self.rng.below(match self.variant {
            Variant::File | Variant::PostgresHubs => 5,
            _ => 3,
        });
        self.log(|| format!("{step}: arm fault {which}"));
        let hubs = self.variant == Variant::PostgresHubs;
        match which {
            0 => Faults::arm(&f.end),
            1 => Faults::arm(&f.durability),
            2 => Faults::arm(&f.sync),
            3 if hubs => Faults::arm(&f.break_in_end),
            _ if hubs => {
                f.fired.fetch_add(1, Ordering::SeqCst);
                f.break_connections();
            }
            3 => self.file_faults.write.store(true, Ordering::SeqCst),
            _ => self.file_faults.sync.store(true, Ordering::SeqCst),
        }
    }

    /// The guard a boundary is run under, if any: a read of one object.
    fn with_guard<R>(&mut self, i: usize, f: impl FnOnce(&mut Sim) -> R) -> R {
        let choice = self.rng.below(6);
        let Some(h) = self.clients[i].handles.clone() else {
            return f(self);
        };
        match choice {
            0 => {
                let k = self.rng.below(PLAINS as u64) as usize;
                let g = h.plains[k].read();
                let out = f(self);
                drop(g);
                out
            }
            1 => {
                let k = self.rng.below(COUNTERS as u64) as usize;
                let g = h.counters[k].read();
                let out = f(self);
                drop(g);
                out
            }
            2 => {
                let k = self.rng.below(SETS as u64) as usize;
                let g = h.sets[k].read();
                let out = f(self);
                drop(g);
                out
            }
            _ => f(self),
        }
    }

    fn boundary(&mut self, step: usize, i: usize, kind: Boundary) -> Result<(), String> {
        if kind == Boundary::Commit && self.clients[i].changed_anything() {
            // Every writing transaction sets its client's journal.
            let seq = self.clients[i].seq;
            let journal = self
                .handles(i)
                .and_then(|h| h.journals[i].write().map(|mut j| j.value = seq));
            if let Err(e) = journal {
                return self.failed_op(step, i, e);
            }
            self.clients[i].effects.push(Effect::Journal(i, seq));
        }
        self.log(|| format!("{step}: client {i} effects {:?}", self.clients[i].effects));
        self.arm_meddler(step, i, kind);
        let result = self.with_guard(i, |sim| match kind {
            Boundary::Commit => sim.clients[i].conn.commit(),
            Boundary::Abort => sim.clients[i].conn.abort(),
            Boundary::Sync => sim.clients[i].conn.sync(),
        });
        self.log(|| format!("{step}: client {i} {kind:?} -> {result:?}"));
        // What the meddler acknowledged before this commit went on came
        // first; what waited for its lock comes after its effects.
        self.settle_meddler(step)?;
        let out = self.boundary_result(step, i, kind, result);
        self.apply_late_meddler(step)?;
        out
    }

    /// In the two-hub variant, now and then, a commit that writes a plain
    /// object has another server's client increment the same object from
    /// inside its commit exchange, while a session of its own hub syncs.
    fn arm_meddler(&mut self, step: usize, i: usize, kind: Boundary) {
        let Some(meddler) = self.stack.meddler.clone() else {
            return;
        };
        let plain = self.clients[i].effects.iter().find_map(|e| match e {
            Effect::Plain { k, .. } => Some(*k),
            _ => None,
        });
        if let (Boundary::Commit, Some(k)) = (kind, plain) {
            if self.chance(50) {
                self.log(|| format!("{step}: meddler armed on plain {k}"));
                *meddler.armed.lock().expect("armed") = Some(k);
            }
        }
    }

    /// Once the exchange the meddler ran in is over: applies its commit
    /// if it was acknowledged before the exchange went on; otherwise waits
    /// for it (it waited for the exchange's lock) and keeps its outcome
    /// for after the exchange's own effects.
    fn settle_meddler(&mut self, step: usize) -> Result<(), String> {
        let Some(meddler) = self.stack.meddler.clone() else {
            return Ok(());
        };
        meddler.armed.lock().expect("armed").take();
        let Some(mut run) = meddler.running.lock().expect("running").take() else {
            return Ok(());
        };
        if let Some(done) = run.early.take() {
            return self.meddler_done(step, run.k, done);
        }
        let done = run
            .done
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| format!("step {step}: the meddler's commit never finished"))?;
        self.late_meddler = Some((run.k, done));
        Ok(())
    }

    /// Applies a meddler's commit that came after the exchange's.
    fn apply_late_meddler(&mut self, step: usize) -> Result<(), String> {
        match self.late_meddler.take() {
            Some((k, done)) => self.meddler_done(step, k, done),
            None => Ok(()),
        }
    }

    fn meddler_done(&mut self, step: usize, k: usize, out: MeddlerOutcome) -> Result<(), String> {
        self.log(|| format!("{step}: meddler on plain {k} -> {out:?}"));
        match out {
            Ok((read, new)) => {
                self.stats.commits += 1;
                self.model
                    .apply(&[Effect::Plain { k, read, new }])
                    .map_err(|e| format!("step {step}: meddler: {e}"))
            }
            Err(e) if e.is_conflict() => {
                self.stats.conflicts += 1;
                Ok(())
            }
            Err(e) => Err(format!("step {step}: the meddler's commit failed: {e}")),
        }
    }

    fn boundary_result(
        &mut self,
        step: usize,
        i: usize,
        kind: Boundary,
        result: durus_core::Result<()>,
    ) -> Result<(), String> {
        match (kind, result) {
            (Boundary::Commit, Ok(())) => {
                self.stats.commits += 1;
                let effects = self.clients[i].take_effects();
                if !effects.is_empty() {
                    self.clients[i].seq += 1;
                }
                self.model
                    .apply(&effects)
                    .map_err(|e| format!("step {step}: {e}"))?;
                self.end_transaction(step, i)
            }
            (Boundary::Commit, Err(Error::Borrowed(_))) => {
                // Refused before anything happened: the guard is gone now.
                if self.clients[i].conn.needs_abort() {
                    return Err(format!("step {step}: a refused commit needs an abort"));
                }
                self.boundary_again(step, i)
            }
            (Boundary::Commit, Err(Error::OutcomeUnknown(_))) => {
                self.stats.unknown += 1;
                self.resolve_unknown(step, i)
            }
            (Boundary::Commit, Err(e)) => {
                if !self.clients[i].conn.needs_abort() {
                    return Err(format!("step {step}: a failed commit ({e}) needs an abort"));
                }
                self.abort(step, i)
            }
            (Boundary::Abort, Ok(())) => self.end_transaction(step, i),
            (Boundary::Abort, Err(_)) => self.reconnect_if_broken(step, i),
            (Boundary::Sync, Ok(())) => Ok(()),
            (Boundary::Sync, Err(_)) => self.abort(step, i),
        }
    }

    fn boundary_again(&mut self, step: usize, i: usize) -> Result<(), String> {
        let again = self.clients[i].conn.commit();
        self.log(|| format!("{step}: client {i} commit again -> {again:?}"));
        match again {
            Ok(()) => {
                self.stats.commits += 1;
                let effects = self.clients[i].take_effects();
                self.clients[i].seq += 1;
                self.model
                    .apply(&effects)
                    .map_err(|e| format!("step {step}: {e}"))?;
                self.end_transaction(step, i)
            }
            Err(Error::OutcomeUnknown(_)) => self.resolve_unknown(step, i),
            Err(_) => self.abort(step, i),
        }
    }

    /// A commit that may or may not have happened: its journal tells, and
    /// either all of it or none of it must be there.
    fn resolve_unknown(&mut self, step: usize, i: usize) -> Result<(), String> {
        let seq = self.clients[i].seq;
        let effects = self.clients[i].take_effects();
        self.clients[i].seq += 1;
        if self.file_faults.fired.load(Ordering::SeqCst) {
            self.restart(step)?;
        }
        self.checker_abort()
            .map_err(|e| format!("step {step}: checker abort: {e}"))?;
        let stored = read_all(&self.checker).map_err(|e| format!("checker read: {e}"))?;
        let happened = stored.journals[i] == seq;
        self.log(|| format!("{step}: unknown outcome resolved: happened = {happened}"));
        if happened {
            self.model
                .apply(&effects)
                .map_err(|e| format!("step {step}: {e}"))?;
        }
        self.abort(step, i)
    }

    fn abort(&mut self, step: usize, i: usize) -> Result<(), String> {
        self.clients[i].clear();
        let out = self.clients[i].conn.abort();
        self.log(|| format!("{step}: client {i} abort -> {out:?}"));
        if self.clients[i].conn.needs_abort() {
            return Err(format!("step {step}: still needs an abort after abort()"));
        }
        match out {
            Ok(()) => self.end_transaction(step, i),
            Err(_) => self.reconnect_if_broken(step, i),
        }
    }

    /// After a failed abort: a file whose write failed is reopened; a
    /// client whose server session ended connects again.
    fn reconnect_if_broken(&mut self, step: usize, i: usize) -> Result<(), String> {
        self.clients[i].clear();
        if self.file_faults.fired.load(Ordering::SeqCst) {
            return self.restart(step);
        }
        if self.variant == Variant::Server {
            self.clients[i].conn = self.stack.connect();
        }
        Ok(())
    }

    /// A transaction ended: a new one starts with fresh handles. Now and
    /// then the client checks it sees every acknowledged commit.
    fn end_transaction(&mut self, step: usize, i: usize) -> Result<(), String> {
        self.apply_late_meddler(step)?;
        self.clients[i].clear();
        if self.file_faults.fired.load(Ordering::SeqCst) {
            return self.restart(step);
        }
        if self.chance(20) {
            let conn = &self.clients[i].conn;
            match read_all(conn) {
                Ok(seen) if seen == self.model => {}
                Ok(seen) => {
                    return Err(format!(
                        "step {step}: client {i} at the start of a transaction sees\n{seen:?}\nbut the model is\n{:?}",
                        self.model
                    ))
                }
                Err(e) => self.log(|| format!("{step}: client {i} fresh read failed: {e}")),
            }
            // The reads above belong to a transaction of their own.
            let _ = self.clients[i].conn.abort();
        }
        Ok(())
    }

    fn pack(&mut self, step: usize, i: usize) -> Result<(), String> {
        self.clients[i].clear();
        let out = self.clients[i].conn.pack();
        self.log(|| format!("{step}: client {i} pack -> {out:?}"));
        self.stats.packs += 1;
        match out {
            Ok(()) => self.end_transaction(step, i),
            Err(_) => self.reconnect_if_broken(step, i),
        }
    }

    /// Reopens the file after a write or fsync of it failed, as a process
    /// restarting would; every client connects again.
    fn restart(&mut self, step: usize) -> Result<(), String> {
        self.log(|| format!("{step}: restart"));
        self.stats.restarts += 1;
        self.stats.faults += self.stack.faults.fired.load(Ordering::SeqCst) as u64;
        // Every connection and the storage go before the file is reopened
        // (it is locked while open).
        let detached = || Connection::new(MemoryStorage::new());
        for c in &mut self.clients {
            c.conn = detached();
            c.clear();
        }
        self.checker = detached();
        let placeholder = finish_stack(
            Hub::new(MemoryStorage::new()),
            Arc::new(Faults::default()),
            Variant::Memory,
        );
        drop(std::mem::replace(&mut self.stack, placeholder));
        self.file_faults = Arc::new(FileFaults::default());
        self.stack = stack(self.variant, &self.scratch, &self.file_faults);
        for c in &mut self.clients {
            c.conn = self.stack.connect();
        }
        self.checker = self.stack.checker();
        Ok(())
    }

    /// The checker starts a transaction that sees every commit. A fault
    /// armed for the clients may hit it first: it fires once.
    fn checker_abort(&self) -> durus_core::Result<()> {
        self.checker.abort().or_else(|_| self.checker.abort())
    }

    /// The storage against the model.
    fn check(&mut self, step: usize) -> Result<(), String> {
        self.checker_abort()
            .map_err(|e| format!("step {step}: checker abort: {e}"))?;
        let stored = match read_all(&self.checker) {
            Ok(m) => m,
            Err(e) => return Err(format!("step {step}: the checker cannot read: {e}")),
        };
        if stored != self.model {
            return Err(format!(
                "step {step}: stored\n{stored:?}\ndiffers from what was acknowledged\n{:?}",
                self.model
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    Commit,
    Abort,
    Sync,
}

fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !text.contains(PANIC_TEXT) {
                default(info);
            }
        }));
    });
}

/// Runs histories from consecutive seeds for `budget` histories, or for as
/// long as `DURUS_SIM_SECONDS` says.
fn simulate(variant: Variant, budget: u64, first_seed: u64) -> Stats {
    quiet_expected_panics();
    let name = format!("{variant:?}").to_lowercase();
    if let Ok(seed) = std::env::var("DURUS_SIM_SEED") {
        let seed: u64 = seed.parse().expect("DURUS_SIM_SEED is a number");
        let wanted = std::env::var("DURUS_SIM_VARIANT").unwrap_or_else(|_| "memory".into());
        if wanted == name {
            let mut sim = Sim::new(variant, seed, true);
            if let Err(e) = sim.run() {
                panic!("{name} seed {seed}: {e}");
            }
        }
        return Stats::default();
    }
    let deadline = std::env::var("DURUS_SIM_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut total = Stats::default();
    let mut seed = first_seed;
    loop {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            None if total.histories >= budget => break,
            _ => {}
        }
        let mut sim = Sim::new(variant, seed, false);
        if let Err(e) = sim.run() {
            panic!(
                "{name} history with seed {seed} broke a promise: {e}\n\
                 replay: DURUS_SIM_SEED={seed} DURUS_SIM_VARIANT={name} \
                 cargo test -p durus-core --test simulation -- --nocapture"
            );
        }
        total.add(&sim.stats);
        seed += 1;
    }
    eprintln!("{name}: {total:?}");
    total
}

#[test]
fn simulation_over_the_hub_and_memory() {
    let stats = simulate(Variant::Memory, 1200, 1);
    if stats.histories > 0 {
        assert!(stats.commits > stats.histories, "commits happen");
        assert!(stats.conflicts > 0, "conflicts happen");
        assert!(stats.unknown > 0, "unknown outcomes happen");
    }
}

#[test]
fn simulation_over_the_hub_and_a_file() {
    let stats = simulate(Variant::File, 200, 1_000_000);
    if stats.histories > 0 {
        assert!(stats.restarts > 0, "file faults happen");
    }
}

#[test]
fn simulation_through_the_server() {
    simulate(Variant::Server, 50, 2_000_000);
}

/// Two hubs over one PostgreSQL database (two servers), clients on both,
/// with PostgreSQL connections broken between steps and inside commits.
#[cfg(feature = "postgres")]
#[test]
fn simulation_over_two_hubs_on_postgres() {
    let Some(_cluster) = support::pg::cluster() else {
        return;
    };
    let stats = simulate(Variant::PostgresHubs, 12, 4_000_000);
    if stats.histories > 0 {
        assert!(stats.commits > stats.histories, "commits happen");
        assert!(stats.faults > 0, "faults happen");
    }
}

/// Clients on PostgreSQL, each with its own `PgStorage` (as processes on
/// several machines would be): a database per history, so fewer of them.
#[cfg(feature = "postgres")]
#[test]
fn simulation_over_postgres() {
    // One cluster for every history (each makes a database of its own).
    let Some(_cluster) = support::pg::cluster() else {
        return;
    };
    let stats = simulate(Variant::Postgres, 12, 3_000_000);
    if stats.histories > 0 {
        assert!(stats.commits > stats.histories, "commits happen");
    }
}
