//! Atomic writes cut short. Its own test binary: removing the writes in flight is
//! process-wide, and would disturb other tests writing files at the same moment.

use harness::files::{remove_in_flight_temporaries, write_atomic};

#[test]
fn writes_cut_short_leave_the_old_file_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv.csv");
    std::fs::write(&path, "old").unwrap();
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
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["conv.csv"]);
    // A finished write is no longer in flight: removing then touches nothing.
    write_atomic(&path, |tmp| std::fs::write(tmp, "newer")).unwrap();
    remove_in_flight_temporaries();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer");
}
