//! The counters of a W4/W5 run in a database: made before the run, read
//! after it.

use super::*;

/// Makes the counters of a run in the root of the database at `address`:
/// `c0`..`c<C-1>` (W4) or `hot` (W5), of the variant's type, at 0.
pub fn setup<M: CounterModel>(
    address: &str,
    mode: Mode,
    variant: Variant,
    clients: usize,
) -> Result<()> {
    let conn = Connection::connect(address)?;
    setup_on::<M>(&conn, mode, variant, clients)
}

/// Makes the counters of a run in the root of `conn`'s database.
pub(super) fn setup_on<M: CounterModel>(
    conn: &Connection,
    mode: Mode,
    variant: Variant,
    clients: usize,
) -> Result<()> {
    let root: PRef<M::Root> = conn.root()?;
    let keys: Vec<String> = match mode {
        Mode::W4 => (0..clients).map(|i| mode.key(i)).collect(),
        Mode::W5 => vec![mode.key(0)],
    };
    {
        let mut r = root.write()?;
        match variant {
            Variant::AbortRetry => keys
                .into_iter()
                .for_each(|k| M::insert_plain(&mut r, k, PRef::new(M::Plain::default()))),
            Variant::Merging => keys
                .into_iter()
                .for_each(|k| M::insert_merging(&mut r, k, PRef::new(M::Merging::default()))),
            Variant::BtreeSum if mode == Mode::W5 => M::insert_keyed(&mut r, keyed::make()?),
            Variant::BtreeSum => return Err(bench_error("--variant btree-sum is a W5 variant")),
        }
    }
    conn.commit()
}

/// The value of the counter under `key` of the variant, in a new connection.
pub fn counter_value<M: CounterModel>(address: &str, variant: Variant, key: &str) -> Result<i64> {
    let conn = Connection::connect(address)?;
    counter_value_on::<M>(&conn, variant, key)
}

/// The value of the counter under `key` of the variant in `conn`'s database.
pub(super) fn counter_value_on<M: CounterModel>(
    conn: &Connection,
    variant: Variant,
    key: &str,
) -> Result<i64> {
    let root: PRef<M::Root> = conn.root()?;
    let missing = || bench_error(format!("no counter {key:?} in the root"));
    let value = match variant {
        Variant::AbortRetry => {
            let c = M::plain(&*root.read()?, key).ok_or_else(missing)?;
            let v = c.read()?.value();
            v
        }
        Variant::Merging => {
            let c = M::merging(&*root.read()?, key).ok_or_else(missing)?;
            let v = c.read()?.value();
            v
        }
        Variant::BtreeSum => {
            let tree = M::keyed(&*root.read()?).ok_or_else(missing)?;
            keyed::values(&tree)?.iter().sum()
        }
    };
    Ok(value)
}

/// Stores a new counter of the variant at 0 under a new oid, reachable
/// from nothing (for databases whose root is not ours, e.g. one a Python
/// client made). Returns its oid.
pub fn store_detached<M: CounterModel>(address: &str, variant: Variant) -> Result<Oid> {
    use durus_core::storage::{NoConflicts, Storage};
    let mut storage = ClientStorage::connect(address)?;
    let oid = storage.new_oid()?;
    let data = match variant {
        Variant::AbortRetry => durus_core::internals::encoding::encode(
            Some(oid),
            <M::Plain as Persistent>::CLASS_NAME,
            &M::Plain::default(),
        ),
        Variant::Merging => durus_core::internals::encoding::encode(
            Some(oid),
            <M::Merging as Persistent>::CLASS_NAME,
            &M::Merging::default(),
        ),
        Variant::BtreeSum => return Err(keyed::not_detached()),
    }
    .map_err(Error::Encoding)?;
    let record = durus_core::internals::record::pack(oid, &data, &[]).map_err(Error::Record)?;
    storage.begin();
    storage.store(oid, record)?;
    storage.end(&mut NoConflicts)?.wait()?;
    storage.close()?;
    Ok(oid)
}

/// The value of a counter of the variant stored under `oid`.
pub fn counter_value_at<M: CounterModel>(address: &str, variant: Variant, oid: Oid) -> Result<i64> {
    let conn = Connection::connect(address)?;
    let value = match variant {
        Variant::AbortRetry => conn.get::<M::Plain>(oid)?.read()?.value(),
        Variant::Merging => conn.get::<M::Merging>(oid)?.read()?.value(),
        Variant::BtreeSum => return Err(keyed::not_detached()),
    };
    Ok(value)
}
