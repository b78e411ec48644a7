//! The job-queue example on a server in this process: every job is taken
//! once, by workers that wait for change rather than poll.

use durus_examples::jobs::{run, LocalServer};
use std::time::Duration;

#[test]
fn every_job_is_taken_once_by_waiting_workers() {
    let server = LocalServer::start().expect("server");
    let report = run(&server.address, 3, 200).expect("run");
    let mut jobs: Vec<u64> = report.taken.iter().map(|(job, _)| *job).collect();
    jobs.sort_unstable();
    assert_eq!(jobs, (0..200).collect::<Vec<_>>());
    // Generous: waiting workers wake within milliseconds, polling ones
    // would take half their interval.
    assert!(report.median() < Duration::from_millis(50), "{report:?}");
}
