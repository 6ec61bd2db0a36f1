//! Running the client libraries nobody here wrote: a Python script under
//! `tests/support/` (RFC 9421 signer, JWT minter, webhook signers), given
//! arguments and a JSON text on stdin, answering on stdout. A script that
//! fails names what `scripts/test.sh` installs for it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Run `tests/support/<script>` with `args` and `stdin`; its stdout.
/// Panics with the script's stderr (and `installs`, what the test command
/// installs for it) when it fails.
pub fn run(script: &str, args: &[&str], stdin: &str, installs: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let mut child = Command::new("python3")
        .arg(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "{script} {args:?} failed (scripts/test.sh installs {installs}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}
