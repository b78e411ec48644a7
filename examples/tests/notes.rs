//! The notes example, one command line per call on a temporary file, as a
//! user would run it several times.

use durus_examples::notes::{run, NotesError};
use std::path::{Path, PathBuf};

struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> TempDb {
        let dir =
            std::env::temp_dir().join(format!("durus-notes-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDb(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.join("notes.durus")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `notes --db DB ARGS...` and returns its output.
fn notes(db: &Path, args: &[&str]) -> Result<String, NotesError> {
    let mut all = vec!["--db".to_string(), db.display().to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let mut out = Vec::new();
    run(&all, &mut out)?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

fn ok(db: &Path, args: &[&str]) -> String {
    notes(db, args).unwrap_or_else(|e| panic!("notes {args:?}: {e}"))
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn notes_are_kept_across_runs_and_found_by_tag_and_date() {
    let tmp = TempDb::new("main");
    let db = tmp.path();

    assert_eq!(ok(&db, &["list"]), "no notes\n");
    assert_eq!(
        ok(
            &db,
            &["add", "Buy milk", "--tag", "errand", "--date", "2024-03-01"]
        ),
        "added #1 2024-03-01 Buy milk [errand]\n"
    );
    ok(
        &db,
        &[
            "add",
            "Call Ann",
            "--tag",
            "phone",
            "--tag",
            "errand",
            "--date",
            "2024-03-05",
        ],
    );
    ok(&db, &["add", "Draft the report", "--date", "2024-04-10"]);
    ok(
        &db,
        &["add", "New year", "--date", "2025-01-01", "--tag", "party"],
    );
    // Added out of date order: the date index still sorts it.
    ok(&db, &["add", "Leap day", "--date", "2024-02-29"]);

    assert_eq!(
        lines(&ok(&db, &["list"])),
        [
            "#1 2024-03-01 Buy milk [errand]",
            "#2 2024-03-05 Call Ann [errand, phone]",
            "#3 2024-04-10 Draft the report",
            "#4 2025-01-01 New year [party]",
            "#5 2024-02-29 Leap day",
        ]
    );

    assert_eq!(
        lines(&ok(&db, &["find", "--tag", "errand"])),
        [
            "#1 2024-03-01 Buy milk [errand]",
            "#2 2024-03-05 Call Ann [errand, phone]"
        ]
    );
    assert_eq!(
        ok(&db, &["find", "--tag", "nothing"]),
        "no matching notes\n"
    );

    // A date range is inclusive at both ends and in date order.
    assert_eq!(
        lines(&ok(
            &db,
            &["find", "--from", "2024-02-29", "--to", "2024-03-05"]
        )),
        [
            "#5 2024-02-29 Leap day",
            "#1 2024-03-01 Buy milk [errand]",
            "#2 2024-03-05 Call Ann [errand, phone]",
        ]
    );
    assert_eq!(
        lines(&ok(&db, &["find", "--from", "2024-04-01"])),
        [
            "#3 2024-04-10 Draft the report",
            "#4 2025-01-01 New year [party]"
        ]
    );
    assert_eq!(
        lines(&ok(&db, &["find", "--to", "2024-03-01", "--tag", "errand"])),
        ["#1 2024-03-01 Buy milk [errand]"]
    );

    // Tagging an existing note updates the note and the tag index.
    assert_eq!(
        ok(&db, &["tag", "3", "work"]),
        "tagged #3 2024-04-10 Draft the report [work]\n"
    );
    assert_eq!(
        ok(&db, &["tag", "3", "work"]),
        "note 3 already has tag work\n"
    );
    ok(&db, &["tag", "1", "work"]);
    assert_eq!(
        lines(&ok(&db, &["find", "--tag", "work"])),
        [
            "#1 2024-03-01 Buy milk [errand, work]",
            "#3 2024-04-10 Draft the report [work]"
        ]
    );
    assert_eq!(
        lines(&ok(
            &db,
            &[
                "find",
                "--tag",
                "work",
                "--from",
                "2024-04-01",
                "--to",
                "2024-12-31"
            ]
        )),
        ["#3 2024-04-10 Draft the report [work]"]
    );

    // Ids keep counting after the earlier runs.
    assert_eq!(
        ok(&db, &["add", "Later", "--date", "2024-05-01"]),
        "added #6 2024-05-01 Later\n"
    );
    assert_eq!(ok(&db, &["list"]).lines().count(), 6);
}

#[test]
fn notes_without_a_date_get_today() {
    let tmp = TempDb::new("today");
    let db = tmp.path();
    let before = durus_examples::notes::Date::today().to_string();
    let added = ok(&db, &["add", "Now"]);
    let today = durus_examples::notes::Date::today().to_string();
    // (Two calls to the clock: the test may run across midnight UTC.)
    assert!(
        added == format!("added #1 {today} Now\n") || added == format!("added #1 {before} Now\n"),
        "{added}"
    );
    let today = added.split(' ').nth(2).unwrap().to_string();
    assert_eq!(
        ok(&db, &["find", "--from", &today, "--to", &today]),
        format!("#1 {today} Now\n")
    );
}

#[test]
fn notes_reports_bad_input_with_exit_codes() {
    let tmp = TempDb::new("errors");
    let db = tmp.path();
    ok(&db, &["add", "Only note", "--date", "2024-01-01"]);

    let usage_errors: [(&[&str], &str); 10] = [
        (&[], "no command given"),
        (&["frobnicate"], "unknown command \"frobnicate\""),
        (&["add"], "add takes one TEXT"),
        (&["add", "  "], "text is empty"),
        (
            &["add", "x", "--date", "2023-02-29"],
            "2023-02-29 is not a date",
        ),
        (&["add", "x", "--date", "1/2/2024"], "expected YYYY-MM-DD"),
        (&["add", "x", "--tag", "two words"], "bad tag"),
        (&["tag", "one", "x"], "bad note id \"one\""),
        (&["find"], "find needs --tag, --from or --to"),
        (
            &["find", "--from", "2024-02-01", "--to", "2024-01-01"],
            "is after --to",
        ),
    ];
    for (args, message) in usage_errors {
        let err = notes(&db, args).expect_err("a usage error");
        assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        assert!(err.to_string().contains(message), "{args:?}: {err}");
    }

    let err = notes(&db, &["tag", "42", "x"]).expect_err("no such note");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(err.to_string(), "no note with id 42");

    let missing_dir = tmp.0.join("no-such-dir").join("notes.durus");
    let err = notes(&missing_dir, &["list"]).expect_err("cannot open");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().starts_with("database: "), "{err}");

    // Nothing above changed the file.
    assert_eq!(ok(&db, &["list"]), "#1 2024-01-01 Only note\n");
}

/// The example binary (built by `cargo test -p durus-examples` next to this
/// test's directory): its exit codes and its output on a file.
#[test]
fn notes_binary_exit_codes() {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(format!("notes{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test -p durus-examples` (or `cargo build --example notes`) first",
        bin.display()
    );
    let tmp = TempDb::new("binary");
    let db = tmp.path().display().to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(["--db", &db])
            .args(args)
            .output()
            .expect("run the notes example")
    };
    let out = run(&[
        "add",
        "From the binary",
        "--tag",
        "cli",
        "--date",
        "2024-06-01",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "added #1 2024-06-01 From the binary [cli]\n"
    );
    let out = run(&["find", "--tag", "cli"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "#1 2024-06-01 From the binary [cli]\n"
    );
    let out = run(&["tag", "7", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "notes: no note with id 7\n"
    );
    let out = run(&["add", "x", "--date", "2024-02-30"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2024-02-30 is not a date"));
}
