//! What a user reads of an error.

/// candle appends a backtrace to its errors' messages when `RUST_BACKTRACE` is set; what a
/// user reads is the message.
pub fn without_backtrace(message: &str) -> String {
    let is_frame = |line: &str| {
        let t = line.trim_start();
        line.starts_with(' ')
            && (t.starts_with("at ")
                || t.split_once(": ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    };
    message
        .lines()
        .filter(|line| !is_frame(line) && !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::without_backtrace;

    #[test]
    fn backtraces_are_cut_from_messages_and_the_message_kept() {
        let message = "--kernel 99: larger than the 65x65 plane\n   0: bt\n             at \
                       /x/error.rs:260:25\n  12: std::panic::catch_unwind\n             at \
                       /rustc/panic.rs:359:14\n";
        assert_eq!(
            without_backtrace(message),
            "--kernel 99: larger than the 65x65 plane"
        );
        let two = "first line\nsecond: line";
        assert_eq!(without_backtrace(two), two);
    }
}
