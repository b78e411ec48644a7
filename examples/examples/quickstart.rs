//! Stores a few objects with references, commits, and shows them again.

use durus_core::{Connection, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "quickstart.Library")]
struct Library {
    books: Vec<PRef<Book>>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "quickstart.Book")]
struct Book {
    title: String,
    author: PRef<Author>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "quickstart.Author")]
struct Author {
    name: String,
}

fn main() -> durus_core::Result<()> {
    let conn = Connection::new(MemoryStorage::new());
    let library: PRef<Library> = conn.root()?;
    let le_guin = PRef::new(Author {
        name: "Ursula K. Le Guin".into(),
    });
    for title in ["A Wizard of Earthsea", "The Dispossessed"] {
        library.write()?.books.push(PRef::new(Book {
            title: title.into(),
            author: le_guin.clone(),
        }));
    }
    conn.commit()?;
    for book in library.read()?.books.iter() {
        let book = book.read()?;
        println!("{} by {}", book.title, book.author.read()?.name);
    }
    Ok(())
}
