//! A command-line notes app whose notes live in a database file across runs.
//!
//! ```text
//! notes [--db PATH] add "text" [--tag TAG]... [--date YYYY-MM-DD]
//! notes [--db PATH] list
//! notes [--db PATH] tag ID TAG
//! notes [--db PATH] find [--tag TAG] [--from YYYY-MM-DD] [--to YYYY-MM-DD]
//! ```
//!
//! The root object holds three indexes, each a [`BTree`] whose nodes are
//! records of their own, so adding a note rewrites a few nodes and not the
//! whole collection:
//!
//! - `notes`: id -> the note (its own record);
//! - `by_date`: (date, id) -> (), so the notes between two dates are one
//!   `range` query, in date order;
//! - `by_tag`: tag -> the set of ids with that tag (a `PersistentSet`, one
//!   record per tag).
//!
//! Dates are calendar dates without a time zone. `add` takes today's date
//! in UTC, from the system clock, unless `--date` gives one.

use durus_core::{BTree, Connection, PRef, Persistent, PersistentSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// The root object: the next id and the three indexes.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "notes.Notebook")]
pub struct Notebook {
    /// The id of the last note added (ids start at 1 and are never reused).
    pub last_id: u64,
    pub notes: BTree<u64, PRef<Note>>,
    pub by_date: BTree<(Date, u64), ()>,
    pub by_tag: BTree<String, PRef<PersistentSet<u64>>>,
}

/// One note.
#[derive(Persistent, Serialize, Deserialize, Clone, Debug)]
#[persistent(class = "notes.Note")]
pub struct Note {
    pub id: u64,
    pub date: Date,
    pub text: String,
    pub tags: BTreeSet<String>,
}

/// A calendar date (proleptic Gregorian), ordered by year, month, day.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// The date if it exists (years 1 to 9999).
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        let ok = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        ok.then_some(Date { year, month, day })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Date, String> {
        let bad = || format!("bad date {s:?}: expected YYYY-MM-DD, such as 2024-02-29");
        let parts: Vec<&str> = s.split('-').collect();
        let [y, m, d] = parts[..] else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        if !(y.chars().chain(m.chars()).chain(d.chars())).all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let (year, month, day) = (
            y.parse().map_err(|_| bad())?,
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        Date::new(year, month, day).ok_or_else(|| format!("{s} is not a date in the calendar"))
    }

    /// The date `days` days after 1970-01-01 (Howard Hinnant's
    /// `civil_from_days`).
    pub fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// Today in UTC, from the system clock.
    pub fn today() -> Date {
        let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        Date::from_days_since_epoch(secs.div_euclid(86_400))
    }

    const MIN: Date = Date {
        year: 1,
        month: 1,
        day: 1,
    };
    const MAX: Date = Date {
        year: 9999,
        month: 12,
        day: 31,
    };
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum NotesError {
    /// The command line is wrong (exit code 2).
    Usage(String),
    /// No command, or an unknown one: the message and the whole usage
    /// (exit code 2).
    NoCommand(String),
    /// The command is well formed but cannot be done, such as tagging a
    /// note that does not exist (exit code 1).
    Failed(String),
    /// The database could not be opened, read or written (exit code 1).
    Database(durus_core::Error),
    /// The output could not be written (exit code 1).
    Output(std::io::Error),
}

impl NotesError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            NotesError::Usage(_) | NotesError::NoCommand(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for NotesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotesError::Usage(m) => write!(f, "{m} (notes --help shows the usage)"),
            NotesError::NoCommand(m) => write!(f, "{m}\n{USAGE}"),
            NotesError::Failed(m) => f.write_str(m),
            NotesError::Database(e) => write!(f, "database: {e}"),
            NotesError::Output(e) => write!(f, "writing the output: {e}"),
        }
    }
}

impl std::error::Error for NotesError {}

impl From<durus_core::Error> for NotesError {
    fn from(e: durus_core::Error) -> Self {
        NotesError::Database(e)
    }
}

impl From<std::io::Error> for NotesError {
    fn from(e: std::io::Error) -> Self {
        NotesError::Output(e)
    }
}

pub const USAGE: &str = "\
usage: notes [--db PATH] add TEXT [--tag TAG]... [--date YYYY-MM-DD]
       notes [--db PATH] list
       notes [--db PATH] tag ID TAG
       notes [--db PATH] find [--tag TAG] [--from YYYY-MM-DD] [--to YYYY-MM-DD]
The database defaults to durus-notes.durus in the temporary directory.";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Add {
        text: String,
        tags: Vec<String>,
        date: Option<Date>,
    },
    List,
    Tag {
        id: u64,
        tag: String,
    },
    Find {
        tag: Option<String>,
        from: Option<Date>,
        to: Option<Date>,
    },
    Help,
}

fn usage(m: impl Into<String>) -> NotesError {
    NotesError::Usage(m.into())
}

fn check_tag(tag: &str) -> Result<String, NotesError> {
    if tag.is_empty() || tag.chars().any(char::is_whitespace) {
        return Err(usage(format!(
            "bad tag {tag:?}: a tag is one word, not empty"
        )));
    }
    Ok(tag.to_string())
}

fn date_arg(v: &str) -> Result<Date, NotesError> {
    Date::parse(v).map_err(usage)
}

/// Parses the arguments (without the program name) into the database path
/// and the command.
pub fn parse(args: &[String]) -> Result<(Option<PathBuf>, Command), NotesError> {
    let mut db = None;
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        match args[i].as_str() {
            "--db" => {
                let path = args.get(i + 1).ok_or_else(|| usage("--db needs a path"))?;
                db = Some(PathBuf::from(path));
                i += 2;
            }
            "-h" | "--help" => return Ok((db, Command::Help)),
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
    }
    let Some(name) = args.get(i) else {
        return Err(NotesError::NoCommand("no command given".into()));
    };
    let rest = &args[i + 1..];
    // Walks the command's own arguments: `--name value` options and
    // positional words.
    let mut positional = Vec::new();
    let mut options: Vec<(&str, &str)> = Vec::new();
    let mut j = 0;
    while j < rest.len() {
        let a = rest[j].as_str();
        if a.starts_with("--") && a.len() > 2 {
            let v = rest
                .get(j + 1)
                .ok_or_else(|| usage(format!("{a} needs a value")))?;
            options.push((a, v));
            j += 2;
        } else {
            positional.push(a);
            j += 1;
        }
    }
    let allow = |allowed: &[&str]| -> Result<(), NotesError> {
        match options.iter().find(|(o, _)| !allowed.contains(o)) {
            Some((o, _)) => Err(usage(format!("{name} has no option {o}"))),
            None => Ok(()),
        }
    };
    let once = |opt: &str| -> Result<Option<&str>, NotesError> {
        let mut values = options.iter().filter(|(o, _)| *o == opt).map(|(_, v)| *v);
        let first = values.next();
        if values.next().is_some() {
            return Err(usage(format!("{opt} given twice")));
        }
        Ok(first)
    };
    let command = match name.as_str() {
        "add" => {
            allow(&["--tag", "--date"])?;
            let [text] = positional[..] else {
                return Err(usage("add takes one TEXT (quote a text of several words)"));
            };
            if text.trim().is_empty() {
                return Err(usage("the note's text is empty"));
            }
            let tags = options
                .iter()
                .filter(|(o, _)| *o == "--tag")
                .map(|(_, v)| check_tag(v))
                .collect::<Result<_, _>>()?;
            let date = once("--date")?.map(date_arg).transpose()?;
            Command::Add {
                text: text.to_string(),
                tags,
                date,
            }
        }
        "list" => {
            allow(&[])?;
            if !positional.is_empty() {
                return Err(usage("list takes no arguments"));
            }
            Command::List
        }
        "tag" => {
            allow(&[])?;
            let [id, tag] = positional[..] else {
                return Err(usage("tag takes an ID and a TAG"));
            };
            let id = id
                .parse()
                .map_err(|_| usage(format!("bad note id {id:?}: expected a number")))?;
            Command::Tag {
                id,
                tag: check_tag(tag)?,
            }
        }
        "find" => {
            allow(&["--tag", "--from", "--to"])?;
            if !positional.is_empty() {
                return Err(usage(format!(
                    "find takes only options, not {:?}",
                    positional[0]
                )));
            }
            let tag = once("--tag")?.map(check_tag).transpose()?;
            let from = once("--from")?.map(date_arg).transpose()?;
            let to = once("--to")?.map(date_arg).transpose()?;
            if tag.is_none() && from.is_none() && to.is_none() {
                return Err(usage("find needs --tag, --from or --to"));
            }
            if let (Some(f), Some(t)) = (from, to) {
                if f > t {
                    return Err(usage(format!("--from {f} is after --to {t}")));
                }
            }
            Command::Find { tag, from, to }
        }
        "help" => Command::Help,
        other => return Err(NotesError::NoCommand(format!("unknown command {other:?}"))),
    };
    Ok((db, command))
}

/// The database path when `--db` is not given.
pub fn default_db() -> PathBuf {
    std::env::temp_dir().join("durus-notes.durus")
}

/// Runs one command line (without the program name), writing its output to
/// `out`.
pub fn run(args: &[String], out: &mut dyn Write) -> Result<(), NotesError> {
    let (db, command) = parse(args)?;
    if command == Command::Help {
        writeln!(out, "{USAGE}")?;
        return Ok(());
    }
    let conn = Connection::open(db.unwrap_or_else(default_db))?;
    let book: PRef<Notebook> = conn.root()?;
    match command {
        Command::Add { text, tags, date } => {
            let date = date.unwrap_or_else(Date::today);
            let id = {
                let mut b = book.write()?;
                b.last_id += 1;
                b.last_id
            };
            let note = Note {
                id,
                date,
                text,
                tags: tags.into_iter().collect(),
            };
            let (notes, by_date, by_tag) = indexes(&book)?;
            for tag in &note.tags {
                tag_set(&by_tag, tag)?.write()?.insert(id);
            }
            by_date.insert((date, id), ())?;
            let line = format_note(&note);
            notes.insert(id, PRef::new(note))?;
            conn.commit()?;
            writeln!(out, "added {line}")?;
        }
        Command::List => {
            let (notes, _, _) = indexes(&book)?;
            let mut count = 0;
            for entry in notes.iter() {
                let (_, note) = entry?;
                writeln!(out, "{}", format_note(&*note.read()?))?;
                count += 1;
            }
            if count == 0 {
                writeln!(out, "no notes")?;
            }
        }
        Command::Tag { id, tag } => {
            let (notes, _, by_tag) = indexes(&book)?;
            let note = notes
                .get(&id)?
                .ok_or_else(|| NotesError::Failed(format!("no note with id {id}")))?;
            if !note.write()?.tags.insert(tag.clone()) {
                writeln!(out, "note {id} already has tag {tag}")?;
                conn.abort()?;
                return Ok(());
            }
            tag_set(&by_tag, &tag)?.write()?.insert(id);
            conn.commit()?;
            writeln!(out, "tagged {}", format_note(&*note.read()?))?;
        }
        Command::Find { tag, from, to } => {
            let (notes, by_date, by_tag) = indexes(&book)?;
            let with_tag: Option<BTreeSet<u64>> = match &tag {
                Some(t) => Some(match by_tag.get(t)? {
                    Some(set) => set.read()?.as_set().clone(),
                    None => BTreeSet::new(),
                }),
                None => None,
            };
            // With dates, walk the date index over the range (in date
            // order); otherwise the tag's ids, in id order.
            let ids: Vec<u64> = if from.is_some() || to.is_some() {
                let lo = (from.unwrap_or(Date::MIN), 0);
                let hi = (to.unwrap_or(Date::MAX), u64::MAX);
                let mut ids = Vec::new();
                for entry in by_date.range(lo..=hi) {
                    let ((_, id), ()) = entry?;
                    if with_tag.as_ref().is_none_or(|s| s.contains(&id)) {
                        ids.push(id);
                    }
                }
                ids
            } else {
                with_tag.unwrap_or_default().into_iter().collect()
            };
            for id in &ids {
                let note = notes.get(id)?.ok_or_else(|| {
                    NotesError::Failed(format!("the indexes name note {id}, which is missing"))
                })?;
                writeln!(out, "{}", format_note(&*note.read()?))?;
            }
            if ids.is_empty() {
                writeln!(out, "no matching notes")?;
            }
        }
        Command::Help => unreachable!("handled above"),
    }
    Ok(())
}

type Indexes = (
    BTree<u64, PRef<Note>>,
    BTree<(Date, u64), ()>,
    BTree<String, PRef<PersistentSet<u64>>>,
);

/// Clones of the three index handles (no borrow of the root stays alive).
fn indexes(book: &PRef<Notebook>) -> Result<Indexes, NotesError> {
    let b = book.read()?;
    Ok((b.notes.clone(), b.by_date.clone(), b.by_tag.clone()))
}

/// The set of ids with `tag`, made (and indexed) on first use.
fn tag_set(
    by_tag: &BTree<String, PRef<PersistentSet<u64>>>,
    tag: &str,
) -> Result<PRef<PersistentSet<u64>>, NotesError> {
    if let Some(set) = by_tag.get(tag)? {
        return Ok(set);
    }
    let set = PRef::new(PersistentSet::new());
    by_tag.insert(tag.to_string(), set.clone())?;
    Ok(set)
}

/// `#ID DATE TEXT [tag, tag]`.
pub fn format_note(note: &Note) -> String {
    let mut line = format!("#{} {} {}", note.id, note.date, note.text);
    if !note.tags.is_empty() {
        let tags: Vec<&str> = note.tags.iter().map(String::as_str).collect();
        line.push_str(&format!(" [{}]", tags.join(", ")));
    }
    line
}

/// The whole program: runs `args` and returns the exit code, writing
/// errors to standard error.
pub fn main_with_args(args: &[String]) -> i32 {
    match run(args, &mut std::io::stdout()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("notes: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Date;

    #[test]
    fn dates_parse_and_count_from_the_epoch() {
        assert_eq!(
            Date::from_days_since_epoch(0),
            Date::new(1970, 1, 1).unwrap()
        );
        assert_eq!(
            Date::from_days_since_epoch(19_782),
            Date::new(2024, 2, 29).unwrap()
        );
        assert_eq!(
            Date::from_days_since_epoch(-1),
            Date::new(1969, 12, 31).unwrap()
        );
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert!(Date::parse("2023-02-29").is_err());
        assert!(Date::parse("2024-13-01").is_err());
        assert!(Date::parse("2024-1-01").is_err());
        assert!(Date::parse("tomorrow").is_err());
        assert!(Date::today() > Date::new(2020, 1, 1).unwrap());
    }
}
