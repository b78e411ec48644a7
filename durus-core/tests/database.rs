//! `Database`: connections per thread and in a pool, retried transactions,
//! application errors returned unchanged, and reconnecting to a server
//! that restarted.

mod support;

use durus_core::server::Address;
use durus_core::{Database, DatabaseOptions, Error, Hub, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Shop {
    /// No merge rule: concurrent increments conflict and are retried.
    orders: u64,
    stock: i64,
}

#[derive(Debug, PartialEq)]
enum ShopError {
    OutOfStock { left: i64 },
    Db(String),
}

impl From<Error> for ShopError {
    fn from(e: Error) -> Self {
        ShopError::Db(e.to_string())
    }
}

fn order(db: &Database, qty: i64) -> Result<u64, ShopError> {
    db.transaction(|conn| {
        let shop: PRef<Shop> = conn.root()?;
        let mut s = shop.write()?;
        s.orders += 1;
        if s.stock < qty {
            // Written above, but the transaction is aborted: nothing stays.
            return Err(ShopError::OutOfStock { left: s.stock });
        }
        s.stock -= qty;
        Ok(s.orders)
    })
}

fn stock(db: &Database) -> (u64, i64) {
    db.transaction(|conn| {
        let shop = conn.root::<Shop>()?;
        let s = shop.read()?;
        Ok::<_, Error>((s.orders, s.stock))
    })
    .expect("read")
}

fn fill(db: &Database, stock: i64) {
    db.transaction(|conn| {
        conn.root::<Shop>()?.write()?.stock = stock;
        Ok::<_, Error>(())
    })
    .expect("fill");
}

#[test]
fn threads_share_a_file_and_every_retry_is_applied_once() {
    let dir = support::Scratch::new("db-threads");
    let db = Database::open(dir.path("shop.durus"))
        .expect("open")
        .with_options(DatabaseOptions {
            attempts: 200,
            ..DatabaseOptions::default()
        });
    fill(&db, 100);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut refused = 0;
                for _ in 0..20 {
                    match order(&db, 1) {
                        Ok(_) => {}
                        Err(ShopError::OutOfStock { .. }) => refused += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                refused
            })
        })
        .collect();
    let refused: u32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(refused, 60, "160 orders of 1 against a stock of 100");
    assert_eq!(stock(&db), (100, 0), "an order refused wrote nothing");
}

#[test]
fn an_application_error_comes_back_unchanged_and_writes_nothing() {
    let db = Database::memory();
    fill(&db, 2);
    assert_eq!(order(&db, 5), Err(ShopError::OutOfStock { left: 2 }));
    assert_eq!(stock(&db), (0, 2));
    assert_eq!(order(&db, 2), Ok(1));
    assert_eq!(stock(&db), (1, 0));
}

#[test]
fn a_transaction_starts_after_every_earlier_commit() {
    let db = Database::from_hub(Hub::new(MemoryStorage::new()));
    fill(&db, 10);
    // Another thread's connection commits; this thread's next transaction sees it.
    let other = db.clone();
    std::thread::spawn(move || fill(&other, 7))
        .join()
        .expect("thread");
    assert_eq!(stock(&db).1, 7);
}

/// Polls a future to completion on this thread.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

#[test]
fn run_executes_on_the_pool_and_returns_the_value() {
    let db = Database::memory().with_options(DatabaseOptions {
        pool_size: 3,
        attempts: 200,
        ..DatabaseOptions::default()
    });
    fill(&db, 1000);
    let futures: Vec<_> = (0..40)
        .map(|_| {
            db.run(|conn| {
                let shop: PRef<Shop> = conn.root()?;
                let mut s = shop.write()?;
                s.stock -= 1;
                s.orders += 1;
                Ok::<_, Error>(std::thread::current().name().map(str::to_string))
            })
        })
        .collect();
    for f in futures {
        let thread = block_on(f).expect("run");
        assert!(thread.is_some_and(|n| n.starts_with("durus-db-")));
    }
    assert_eq!(stock(&db), (40, 960));
    let err = block_on(db.run(|_| Err::<(), _>(ShopError::OutOfStock { left: 0 })));
    assert_eq!(err, Err(ShopError::OutOfStock { left: 0 }));
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn a_server_restart_is_survived_without_a_new_database() {
    let hub = Hub::new(MemoryStorage::new());
    let port = free_port();
    let config = move |c: &mut durus_core::server::ServerConfig| {
        c.address = Address::tcp("127.0.0.1", port);
    };
    let mut server = support::server::InProcess::with_hub(hub.clone(), config);
    let db = Database::connect(&server.addr())
        .expect("connect")
        .with_options(DatabaseOptions {
            attempts: 50,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..DatabaseOptions::default()
        });
    fill(&db, 10);
    assert_eq!(order(&db, 1), Ok(1));
    server.stop().expect("stop");
    // While the server is away, a transaction fails after its attempts.
    let short = db.with_options(DatabaseOptions {
        attempts: 2,
        ..DatabaseOptions::default()
    });
    assert!(matches!(order(&short, 1), Err(ShopError::Db(_))));
    let restarted = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        support::server::InProcess::with_hub(hub, config)
    });
    // This one waits for the server (the same port) and goes on.
    assert_eq!(order(&db, 1), Ok(2));
    let _server = restarted.join().expect("server");
    assert_eq!(stock(&db), (2, 8));
}
