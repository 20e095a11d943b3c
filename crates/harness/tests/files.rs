//! Atomic writes cut short. Its own test binary: removing the writes in flight is
//! process-wide, and would disturb other tests writing files at the same moment.

use harness::files::{remove_in_flight_temporaries, write_atomic};

#[test]
fn writes_cut_short_leave_the_old_file_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv.csv");
    let names = || -> Vec<_> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    // A finished write is no longer in flight: what follows does not touch it.
    write_atomic(&path, |tmp| std::fs::write(tmp, "old")).unwrap();
    // The process is told to exit at once in the middle of a write: the handler removes
    // what is in flight, so the write cannot finish and the old file stays.
    let result = write_atomic(&path, |tmp| {
        std::fs::write(tmp, "new")?;
        remove_in_flight_temporaries();
        assert!(!tmp.exists());
        Ok(())
    });
    assert!(result.is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(names(), ["conv.csv"]);
    // A write that starts after (another thread, before the process has exited) is
    // refused, leaving no folder.
    let late = write_atomic(&path, |tmp| std::fs::write(tmp, "late")).unwrap_err();
    assert!(late.to_string().contains("exiting"), "{late}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(names(), ["conv.csv"]);
}
