//! Docs that work as pasted: every command block of README.md and docs/*.md
//! marked `<!-- doctest … -->` is run against the real binary on loopback
//! (the memory store, a recording upstream, ephemeral ports) and must
//! print what the marker says the reader will see.
//!
//! A marker is an HTML comment (invisible on GitHub) right before a fenced
//! `sh` block:
//!
//! ```text
//! <!-- doctest config=config.example.toml env=BILLING_SVC_SECRET=s3cr3t-billing
//! expect: HTTP/1.1 409
//! expect: "reason":"replayed_nonce"
//! -->
//! ```
//!
//! - `config=FILE` starts `replay-guard run` on that repository file,
//!   `config=above` on the nearest ```toml block above the marker (with a
//!   `[server]` section added), `config=none` (the default) starts nothing;
//! - `env=NAME=VALUE` (repeatable) is set for the proxy and the block;
//! - each `expect:` line must appear in the block's output (stdout, then
//!   stderr), in order; `exit=N` is the exit status (default 0).
//!
//! The block runs in `bash -eo pipefail` in a scratch directory, with
//! `replay-guard` and `cargo run [--release] --` meaning the binary under
//! test, `127.0.0.1:8080` the proxy, `127.0.0.1:9901` its admin listener,
//! `127.0.0.1:9000` the upstream and `/tmp/` the scratch directory (which
//! links the repository's `clients/` and `config.example.toml`). Each block is bounded to 60 s.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::binary::ProxyProcess;
use support::upstream::Upstream;

/// One marked block.
#[derive(Debug)]
struct DocTest {
    /// `file:line` of the block, for failure messages.
    place: String,
    /// `config=` value.
    config: Option<String>,
    /// The nearest ```toml block above the marker.
    toml_above: Option<String>,
    /// `env=` pairs.
    env: Vec<(String, String)>,
    /// `expect:` lines.
    expect: Vec<String>,
    /// `exit=`.
    exit: i32,
    /// The shell block.
    script: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The marked blocks of one markdown file.
fn doctests(path: &Path) -> Vec<DocTest> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path
        .strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut toml_above: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line == "```toml" {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap();
            toml_above = Some(lines[i + 1..end].join("\n"));
            i = end + 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("<!-- doctest") {
            let mut header = vec![rest.trim_end_matches("-->").trim().to_owned()];
            let mut j = i;
            while !lines[j].contains("-->") {
                j += 1;
                header.push(lines[j].trim().trim_end_matches("-->").trim().to_owned());
            }
            let fence = j + 1;
            assert_eq!(
                lines[fence].trim(),
                "```sh",
                "{name}:{}: a doctest marker precedes a ```sh block",
                fence + 1
            );
            let end = (fence + 1..lines.len())
                .find(|&k| lines[k].trim() == "```")
                .unwrap();
            let mut test = DocTest {
                place: format!("{name}:{}", fence + 1),
                config: None,
                toml_above: toml_above.clone(),
                env: Vec::new(),
                expect: Vec::new(),
                exit: 0,
                script: lines[fence + 1..end].join("\n"),
            };
            for part in header {
                if let Some(expect) = part.strip_prefix("expect:") {
                    test.expect.push(expect.trim().to_owned());
                    continue;
                }
                for token in part.split_whitespace() {
                    match token.split_once('=') {
                        Some(("config", v)) => {
                            test.config = Some(v.to_owned()).filter(|v| v != "none")
                        }
                        Some(("env", v)) => {
                            let (k, v) = v.split_once('=').expect("env=NAME=VALUE");
                            test.env.push((k.to_owned(), v.to_owned()));
                        }
                        Some(("exit", v)) => test.exit = v.parse().unwrap(),
                        _ => panic!("{}: unknown doctest option {token:?}", test.place),
                    }
                }
            }
            out.push(test);
            i = end + 1;
            continue;
        }
        i += 1;
    }
    out
}

/// The TOML the proxy runs: the named file or the block above, with the
/// listeners on ephemeral loopback ports and the upstream ours.
fn proxy_toml(test: &DocTest, upstream: &str) -> String {
    let text = match test.config.as_deref() {
        Some("above") => {
            let block = test
                .toml_above
                .clone()
                .unwrap_or_else(|| panic!("{}: no ```toml block above", test.place));
            format!("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:9901\"\nupstream = \"http://127.0.0.1:9000\"\n\n{block}\n")
        }
        Some(file) => std::fs::read_to_string(repo().join(file)).unwrap(),
        None => unreachable!(),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    let server = doc["server"].as_table_mut().unwrap();
    server["listen"] = toml_edit::value("127.0.0.1:0");
    server["admin_listen"] = toml_edit::value("127.0.0.1:0");
    server["upstream"] = toml_edit::value(upstream);
    doc.to_string()
}

/// Bash functions and variables that make the pasted block run here.
fn prelude() -> String {
    let bin = env!("CARGO_BIN_EXE_replay-guard");
    format!(
        r#"replay-guard() {{ "{bin}" "$@"; }}
cargo() {{
  if [ "$1" = run ]; then
    shift; [ "$1" = --release ] && shift; [ "$1" = -- ] && shift
    "{bin}" "$@"
  else
    command cargo "$@"
  fi
}}
export -f replay-guard cargo
"#
    )
}

async fn run(test: &DocTest) -> Result<(), String> {
    let upstream = Upstream::start().await;
    let env: Vec<(&str, &str)> = test
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let proxy = test
        .config
        .as_ref()
        .map(|_| ProxyProcess::start_with_env(&proxy_toml(test, &upstream.url()), &env));
    let scratch = tempfile::tempdir().unwrap();
    // Blocks name the repository's client snippets by relative path.
    for name in ["clients", "config.example.toml"] {
        std::os::unix::fs::symlink(repo().join(name), scratch.path().join(name)).unwrap();
    }
    let mut script = test
        .script
        .replace("/tmp/", &format!("{}/", scratch.path().display()));
    if let Some(proxy) = &proxy {
        script = script
            .replace("127.0.0.1:8080", &proxy.addr.to_string())
            .replace("localhost:8080", &proxy.addr.to_string());
        if let Some(admin) = proxy.admin {
            script = script.replace("127.0.0.1:9901", &admin.to_string());
        }
    }
    script = script.replace("127.0.0.1:9000", &upstream.addr.to_string());
    let mut command = tokio::process::Command::new("bash");
    command
        .args(["-eo", "pipefail", "-c", &format!("{}\n{script}", prelude())])
        .current_dir(scratch.path())
        .env_remove("REPLAY_GUARD_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &test.env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| format!("{}: did not finish within 60 s", test.place))?
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = || format!("{}:\n{}\n--- output ---\n{text}", test.place, test.script);
    if std::env::var_os("DOCTEST_SHOW").is_some() {
        eprintln!("{}", shown());
    }
    if output.status.code() != Some(test.exit) {
        return Err(format!(
            "exit {:?}, expected {}: {}",
            output.status.code(),
            test.exit,
            shown()
        ));
    }
    let mut from = 0;
    for expect in &test.expect {
        match text[from..].find(expect.as_str()) {
            Some(at) => from += at + expect.len(),
            None => return Err(format!("{expect:?} not found (in order): {}", shown())),
        }
    }
    Ok(())
}

/// Every marked block of README.md and docs/*.md.
fn all_doctests() -> Vec<DocTest> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files.iter().flat_map(|f| doctests(f)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_command_blocks_of_the_docs_print_what_they_claim() {
    let tests = all_doctests();
    assert!(
        tests.len() >= 8,
        "the README's runnable blocks are marked: {tests:#?}"
    );
    let mut failures = Vec::new();
    for test in &tests {
        if let Err(e) = run(test).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} doc blocks failed:\n\n{}",
        failures.len(),
        tests.len(),
        failures.join("\n\n")
    );
}
