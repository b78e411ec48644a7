//! A web shop service on [`Database`]: products with a stock that never
//! goes below zero, orders in a `BTree`, tags that concurrent requests add.
//!
//! The HTTP side is axum on tokio; every request runs one database
//! transaction with [`Database::run`], on the database's own threads, so
//! the runtime's threads never block on the database. Concurrent orders of
//! one product merge their stock changes instead of conflicting; an order
//! that would take the stock below zero is refused (409).
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /products` | `{"sku","name","stock","tags"}` | 201 |
//! | `GET /products/{sku}` | | 200 `{"sku","name","stock","tags"}`, 404 |
//! | `POST /products/{sku}/tags` | `{"tag"}` | 204, 404 |
//! | `POST /orders` | `{"sku","qty"}` | 201 `{"id"}`, 404, 409 out of stock |
//! | `GET /stats` | | 200 `{"orders","units"}` |
//!
//! The same service can run on a hand-written pool instead (one OS thread
//! per connection, closures sent over channels, as services did before
//! `Database`), to compare the two: [`Backend::HandPool`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use durus_core::{BTree, Connection, Database, Error, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// The root: products by SKU, orders by id.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "shop.Shop")]
pub struct Shop {
    pub products: BTree<String, PRef<Product>>,
    pub orders: BTree<u64, Order>,
}

/// A product. Concurrent orders change `stock` at once: their changes
/// merge, and a merge that would go below zero is refused (the order that
/// comes second runs again on fresh data, where its own check refuses it).
/// Concurrent tags are all kept.
#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
#[persistent(class = "shop.Product")]
pub struct Product {
    pub name: String,
    #[merge(sum(min = 0))]
    pub stock: i64,
    #[merge(union)]
    pub tags: BTreeSet<String>,
}

/// One order, stored in the orders tree.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Order {
    pub sku: String,
    pub qty: i64,
}

/// What a request can fail with.
#[derive(Debug)]
pub enum ShopError {
    NotFound(String),
    OutOfStock { sku: String, left: i64 },
    BadRequest(String),
    Db(Error),
}

impl From<Error> for ShopError {
    fn from(e: Error) -> Self {
        ShopError::Db(e)
    }
}

impl IntoResponse for ShopError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ShopError::NotFound(sku) => (StatusCode::NOT_FOUND, format!("no product {sku}")),
            ShopError::OutOfStock { sku, left } => (
                StatusCode::CONFLICT,
                format!("out of stock: {left} of {sku} left"),
            ),
            ShopError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            ShopError::Db(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

#[derive(Deserialize)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub stock: i64,
    #[serde(default)]
    pub tags: BTreeSet<String>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct ProductView {
    pub sku: String,
    pub name: String,
    pub stock: i64,
    pub tags: BTreeSet<String>,
}

#[derive(Deserialize)]
pub struct NewOrder {
    pub sku: String,
    pub qty: i64,
}

#[derive(Deserialize)]
pub struct NewTag {
    pub tag: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Stats {
    pub orders: u64,
    pub units: i64,
}

// The work of each request: one transaction on a connection. `Database`
// and the hand-written pool run exactly these.

fn product(conn: &Connection, sku: &str) -> Result<PRef<Product>, ShopError> {
    let shop: PRef<Shop> = conn.root()?;
    let products = shop.read()?.products.clone();
    products
        .get(sku)?
        .ok_or_else(|| ShopError::NotFound(sku.to_string()))
}

fn add_product(conn: &Connection, p: &NewProduct) -> Result<(), ShopError> {
    if p.stock < 0 {
        return Err(ShopError::BadRequest("stock below zero".into()));
    }
    let shop: PRef<Shop> = conn.root()?;
    let products = shop.read()?.products.clone();
    let product = PRef::new(Product {
        name: p.name.clone(),
        stock: p.stock,
        tags: p.tags.clone(),
    });
    products.insert(p.sku.clone(), product)?;
    Ok(())
}

fn show_product(conn: &Connection, sku: &str) -> Result<ProductView, ShopError> {
    let p = product(conn, sku)?;
    let p = p.read()?;
    Ok(ProductView {
        sku: sku.to_string(),
        name: p.name.clone(),
        stock: p.stock,
        tags: p.tags.clone(),
    })
}

fn add_tag(conn: &Connection, sku: &str, tag: &str) -> Result<(), ShopError> {
    product(conn, sku)?.write()?.tags.insert(tag.to_string());
    Ok(())
}

/// Order ids: unique without a shared counter (which every order would
/// write, and so conflict on): the process's start time and a count.
fn next_order_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        now << 20
    });
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

fn place_order(conn: &Connection, order: &NewOrder, id: u64) -> Result<u64, ShopError> {
    if order.qty <= 0 {
        return Err(ShopError::BadRequest("qty must be positive".into()));
    }
    let p = product(conn, &order.sku)?;
    {
        let mut p = p.write()?;
        if p.stock < order.qty {
            return Err(ShopError::OutOfStock {
                sku: order.sku.clone(),
                left: p.stock,
            });
        }
        p.stock -= order.qty;
    }
    let shop: PRef<Shop> = conn.root()?;
    let orders = shop.read()?.orders.clone();
    orders.insert(
        id,
        Order {
            sku: order.sku.clone(),
            qty: order.qty,
        },
    )?;
    Ok(id)
}

fn stats(conn: &Connection) -> Result<Stats, ShopError> {
    let shop: PRef<Shop> = conn.root()?;
    let orders = shop.read()?.orders.clone();
    let mut units = 0;
    for entry in orders.values() {
        units += entry?.qty;
    }
    Ok(Stats {
        orders: orders.len()?,
        units,
    })
}

/// Where requests run their transactions.
#[derive(Clone)]
pub enum Backend {
    /// [`Database::run`]: the pool, retries and reconnects of the library.
    Database(Database),
    /// A hand-written pool: one OS thread per connection, closures sent
    /// over a channel, a bounded retry on conflicts. For comparison only.
    HandPool(HandPool),
}

impl Backend {
    async fn run<T, F>(&self, f: F) -> Result<T, ShopError>
    where
        F: FnMut(&Connection) -> Result<T, ShopError> + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Backend::Database(db) => db.run(f).await,
            Backend::HandPool(pool) => pool.run(f).await,
        }
    }
}

type HandJob = Box<dyn FnOnce(&Connection) + Send>;

/// The pool users wrote before `Database`: threads owning connections.
#[derive(Clone)]
pub struct HandPool {
    jobs: mpsc::Sender<HandJob>,
}

impl HandPool {
    /// `size` threads, each with a connection from `db` (for its storage).
    pub fn new(db: &Database, size: usize) -> HandPool {
        let (jobs, queue) = mpsc::channel::<HandJob>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..size.max(1) {
            let queue = queue.clone();
            let db = db.clone();
            std::thread::spawn(move || {
                let conn = db.connection().expect("a connection");
                loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(&conn),
                        Err(_) => break,
                    }
                }
            });
        }
        HandPool { jobs }
    }

    async fn run<T, F>(&self, mut f: F) -> Result<T, ShopError>
    where
        F: FnMut(&Connection) -> Result<T, ShopError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: HandJob = Box::new(move |conn| {
            let mut out = Err(ShopError::Db(Error::NeedsAbort));
            for _ in 0..50 {
                let _ = conn.abort();
                out = f(conn).and_then(|v| conn.commit().map(|()| v).map_err(ShopError::Db));
                match &out {
                    Err(ShopError::Db(e)) if e.is_conflict() => continue,
                    Err(_) if conn.needs_abort() => continue,
                    _ => break,
                }
            }
            if out.is_err() {
                let _ = conn.abort();
            }
            let _ = tx.send(out);
        });
        self.jobs
            .send(job)
            .map_err(|_| ShopError::Db(Error::NeedsAbort))?;
        rx.await.unwrap_or(Err(ShopError::Db(Error::NeedsAbort)))
    }
}

/// The HTTP routes over a backend.
pub fn router(backend: Backend) -> Router {
    Router::new()
        .route("/products", post(http_add_product))
        .route("/products/{sku}", get(http_show_product))
        .route("/products/{sku}/tags", post(http_add_tag))
        .route("/orders", post(http_order))
        .route("/stats", get(http_stats))
        .with_state(backend)
}

async fn http_add_product(
    State(b): State<Backend>,
    Json(p): Json<NewProduct>,
) -> Result<StatusCode, ShopError> {
    b.run(move |conn| add_product(conn, &p)).await?;
    Ok(StatusCode::CREATED)
}

async fn http_show_product(
    State(b): State<Backend>,
    Path(sku): Path<String>,
) -> Result<Json<ProductView>, ShopError> {
    Ok(Json(b.run(move |conn| show_product(conn, &sku)).await?))
}

async fn http_add_tag(
    State(b): State<Backend>,
    Path(sku): Path<String>,
    Json(t): Json<NewTag>,
) -> Result<StatusCode, ShopError> {
    b.run(move |conn| add_tag(conn, &sku, &t.tag)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn http_order(
    State(b): State<Backend>,
    Json(o): Json<NewOrder>,
) -> Result<(StatusCode, Json<serde_json::Value>), ShopError> {
    // One id for every attempt of this request.
    let id = next_order_id();
    let id = b.run(move |conn| place_order(conn, &o, id)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

async fn http_stats(State(b): State<Backend>) -> Result<Json<Stats>, ShopError> {
    Ok(Json(b.run(stats).await?))
}

/// A running service: its address, and a handle that stops it.
pub struct Service {
    pub address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Serves `backend` on `bind` (port 0: a free one) on a runtime of its own.
    pub fn start(backend: Backend, bind: &str) -> std::io::Result<Service> {
        let listener = std::net::TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, router(backend))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Service {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops serving and waits for the runtime to end.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `shop [--db PATH | --server ADDRESS] [--bind HOST:PORT] [--hand-pool]`:
/// serves until killed.
pub fn main_with_args(args: &[String]) -> i32 {
    let mut db_path = std::env::temp_dir().join("durus-shop.durus");
    let mut server = None;
    let mut bind = "127.0.0.1:8080".to_string();
    let mut hand_pool = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.clone().next()) {
            ("--db", Some(v)) => {
                db_path = v.into();
                it.next();
            }
            ("--server", Some(v)) => {
                server = Some(v.clone());
                it.next();
            }
            ("--bind", Some(v)) => {
                bind = v.clone();
                it.next();
            }
            ("--hand-pool", _) => hand_pool = true,
            _ => {
                eprintln!(
                    "usage: shop [--db PATH | --server ADDRESS] [--bind HOST:PORT] [--hand-pool]"
                );
                return 2;
            }
        }
    }
    let db = match &server {
        Some(address) => Database::connect(address),
        None => Database::open(&db_path),
    };
    let db = match db {
        Ok(db) => db,
        Err(e) => {
            eprintln!("shop: {e}");
            return 1;
        }
    };
    let backend = if hand_pool {
        Backend::HandPool(HandPool::new(&db, db.options().pool_size))
    } else {
        Backend::Database(db)
    };
    match Service::start(backend, &bind) {
        Ok(service) => {
            println!("shop: serving on http://{}", service.address);
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("shop: {e}");
            1
        }
    }
}

/// A minimal HTTP/1.1 client with keep-alive, for the tests and the
/// benchmark of this example (no client crate needed for JSON over
/// loopback).
pub mod client {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// One kept-alive connection to the service.
    pub struct Client {
        stream: BufReader<TcpStream>,
    }

    impl Client {
        pub fn connect(address: SocketAddr) -> std::io::Result<Client> {
            let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream.set_nodelay(true)?;
            Ok(Client {
                stream: BufReader::new(stream),
            })
        }

        /// Sends one request; returns the status and the body.
        pub fn request(
            &mut self,
            method: &str,
            path: &str,
            body: Option<&str>,
        ) -> std::io::Result<(u16, String)> {
            let body = body.unwrap_or("");
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let out = self.stream.get_mut();
            out.write_all(head.as_bytes())?;
            out.write_all(body.as_bytes())?;
            let mut line = String::new();
            self.stream.read_line(&mut line)?;
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if self.stream.read_line(&mut header)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            self.stream.read_exact(&mut body)?;
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
    }
}
