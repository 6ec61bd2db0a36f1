//! Config loading: arbitrary text never panics, and every error names the
//! file (with a line and column where there is one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replay_guard::config::Config;

fuzz_target!(|text: &str| {
    // Never let the fuzzer make the parser read files or devices
    // (`secret_file = "/dev/zero"` would block, not crash): such keys
    // become unknown keys, which still exercises the error path.
    let text = text.replace("_file", "_fi1e");
    if let Err(errors) = Config::parse(&text, "fuzz.toml") {
        assert!(!errors.errors.is_empty());
        for line in &errors.errors {
            assert!(line.starts_with("fuzz.toml"), "{line:?}");
        }
    }
});
