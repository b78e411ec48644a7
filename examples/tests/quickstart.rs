//! The quickstart example, run twice on a fresh file.

#[test]
fn quickstart_stores_and_shows_the_books_across_runs() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("durus-quickstart-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("library.durus");
    let _ = std::fs::remove_file(&path);
    let mut first = Vec::new();
    durus_examples::quickstart::run(&path, &mut first)?;
    let first = String::from_utf8(first)?;
    assert!(first.contains("(opened 1 times)"), "{first}");
    assert!(first.contains("A Wizard of Earthsea by Ursula K. Le Guin"));
    assert!(first.contains("The Dispossessed by Ursula K. Le Guin"));
    let mut second = Vec::new();
    durus_examples::quickstart::run(&path, &mut second)?;
    let second = String::from_utf8(second)?;
    assert!(second.contains("(opened 2 times)"), "{second}");
    assert_eq!(
        second.matches(" by ").count(),
        2,
        "no books were added twice"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
