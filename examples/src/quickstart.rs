//! Opens (or creates) a database file, stores a few objects that refer to
//! each other, commits, reopens the file and shows what it holds.

use durus_core::{Connection, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The root: every book, and how many times the program ran.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "quickstart.Library")]
pub struct Library {
    pub books: Vec<PRef<Book>>,
    pub runs: u32,
}

/// A book refers to its author, a persistent object of its own.
#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "quickstart.Book")]
pub struct Book {
    pub title: String,
    pub author: PRef<Author>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "quickstart.Author")]
pub struct Author {
    pub name: String,
}

/// Runs the quickstart on the file at `path`, writing what it shows to `out`.
pub fn run(path: &Path, out: &mut dyn Write) -> Result<(), Box<dyn std::error::Error>> {
    {
        let conn = Connection::open(path)?;
        let library: PRef<Library> = conn.root()?;
        if library.read()?.books.is_empty() {
            let le_guin = PRef::new(Author {
                name: "Ursula K. Le Guin".into(),
            });
            let mut lib = library.write()?;
            for title in ["A Wizard of Earthsea", "The Dispossessed"] {
                lib.books.push(PRef::new(Book {
                    title: title.into(),
                    author: le_guin.clone(),
                }));
            }
        }
        library.write()?.runs += 1;
        conn.commit()?;
    } // the connection closes the file here

    let conn = Connection::open(path)?;
    let library: PRef<Library> = conn.root()?;
    let lib = library.read()?;
    writeln!(out, "{} (opened {} times)", path.display(), lib.runs)?;
    for book in &lib.books {
        let book = book.read()?;
        writeln!(out, "  {} by {}", book.title, book.author.read()?.name)?;
    }
    writeln!(
        out,
        "{} objects loaded from the file",
        conn.loads_from_storage()
    )?;
    Ok(())
}
