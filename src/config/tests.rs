//! Loading, parsing and error reporting of whole config files.

use super::*;

const MINIMAL: &str =
    "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n";

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.errors,
    }
}

#[test]
fn minimal_config_has_defaults() {
    let config = Config::parse(MINIMAL, "t.toml").unwrap();
    assert_eq!(config.server.max_body_bytes, 1_048_576);
    assert_eq!(config.server.unmatched, Unmatched::Forward);
    assert_eq!(config.store.kind, StoreKind::Memory);
    assert_eq!(config.store.on_error, OnStoreError::Reject);
    assert!(config.routes.is_empty());
}

#[test]
fn workers_default_to_one_per_cpu_and_must_be_sensible() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(
        Config::parse(MINIMAL, "t.toml").unwrap().server.workers,
        cpus
    );
    let four = Config::parse(&format!("{MINIMAL}workers = 4\n"), "t.toml").unwrap();
    assert_eq!(four.server.workers, 4);
    for bad in ["0", "5000"] {
        let errs = errors(&format!("{MINIMAL}workers = {bad}\n"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:4:11: workers must be between 1 and 1024"),
            "{}",
            errs[0]
        );
    }
}

#[test]
fn unknown_key_names_line_and_column() {
    let text = format!("{MINIMAL}upstream_timout_ms = 5\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("t.toml:4:1: unknown field `upstream_timout_ms`"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains("upstream_timeout_ms"),
        "lists what to write: {}",
        errs[0]
    );
}

#[test]
fn unknown_methods_are_errors_with_a_suggestion_unless_listed_as_extensions() {
    let route = |methods: &str| {
        format!("{MINIMAL}[[routes]]\nname = \"a\"\nmethods = {methods}\npath = \"/p\"\n")
    };
    let errs = errors(&route(r#"["PSOT"]"#));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains(r#""PSOT" is not a registered HTTP method: did you mean "POST"?"#),
        "{errs:?}"
    );
    let errs = errors(&route(r#"["PURGE"]"#));
    assert!(errs[0].contains("extension_methods"), "{errs:?}");
    let text = route(r#"["purge", "post"]"#).replacen(
        "[server]\n",
        "[server]\nextension_methods = [\"PURGE\"]\n",
        1,
    );
    let config = Config::parse(&text, "t.toml").unwrap();
    let methods = config.routes[0].methods.clone().unwrap();
    assert_eq!(
        methods,
        vec![
            http::Method::from_bytes(b"PURGE").unwrap(),
            http::Method::POST
        ]
    );
}

#[test]
fn every_route_problem_is_reported_at_once() {
    let text = format!(
        "{MINIMAL}[[routes]]\nname = \"a\"\npath = \"payments\"\n\n[[routes]]\nname = \"b\"\npath = \"/x\"\nidentity = \"key_id\"\nnonce = {{ required = true }}\n"
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.toml:6:8:") && e.contains("must start with '/'")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.toml:11:12:") && e.contains("signature")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.toml:12:9:") && e.contains("freshness")),
        "{errs:?}"
    );
}

#[test]
fn lease_must_exceed_upstream_timeout_plus_the_clock_margin() {
    let text = "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\nupstream_timeout_ms = 30000\n[[routes]]\nname = \"p\"\npath = \"/p\"\nidempotency = { lease_secs = 10 }\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("lease_secs = 36"), "{}", errs[0]);
    // The replicas' clock margin counts: 30 s + 5 s by default.
    let ok = text.replace("lease_secs = 10", "lease_secs = 36");
    assert!(errors(&ok).is_empty());
    let narrow = text
        .replace("lease_secs = 10", "lease_secs = 31")
        .replace("[[routes]]", "[store]\nclock_margin_secs = 0\n[[routes]]");
    assert!(errors(&narrow).is_empty(), "{:?}", errors(&narrow));
    let at_margin = text.replace("lease_secs = 10", "lease_secs = 35");
    assert_eq!(errors(&at_margin).len(), 1);
}

#[test]
fn bad_enum_value_says_what_is_allowed() {
    let errs = errors(&format!("{MINIMAL}unmatched = \"deny\"\n"));
    assert!(errs[0].starts_with("t.toml:4:13:"), "{errs:?}");
    assert!(
        errs[0].contains("forward") && errs[0].contains("reject"),
        "{errs:?}"
    );
}

#[test]
fn missing_secret_env_is_an_error_without_the_value() {
    let text =
        format!("{MINIMAL}[[keys]]\nid = \"k\"\nsecret_env = \"REPLAY_GUARD_TEST_SURELY_UNSET\"\n");
    let errs = errors(&text);
    assert!(errs[0].starts_with("t.toml:6:14:"), "{errs:?}");
}

/// Variables and files that exist only in the test, never in the
/// process: a parse that finds them read them through the fake.
#[derive(Default)]
struct FakeEnvironment {
    vars: BTreeMap<&'static str, &'static str>,
    files: BTreeMap<&'static str, &'static [u8]>,
}

impl Environment for FakeEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|v| (*v).to_owned())
    }

    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        path.to_str()
            .and_then(|p| self.files.get(p))
            .map(|bytes| bytes.to_vec())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not in the fake"))
    }
}

fn fake() -> FakeEnvironment {
    FakeEnvironment {
        vars: BTreeMap::from([
            ("RG_FAKE_ONLY_BILLING", "from-the-fake-env"),
            ("RG_FAKE_ONLY_OLD", "old-secret"),
            ("RG_FAKE_ONLY_EMPTY", ""),
            ("AWS_REGION", "eu-north-1"),
        ]),
        files: BTreeMap::from([
            ("/fake/billing.key", &b"file-secret\r\n"[..]),
            ("/fake/old.key", &b"old-file-secret\n"[..]),
            ("/fake/empty.key", &b"\n"[..]),
        ]),
    }
}

#[test]
fn secrets_come_from_the_injected_environment() {
    let text = format!(
        "{MINIMAL}[[keys]]\nid = \"env\"\nsecret_env = \"RG_FAKE_ONLY_BILLING\"\nprevious_secret_env = \"RG_FAKE_ONLY_OLD\"\n\
         [[keys]]\nid = \"file\"\nsecret_file = \"/fake/billing.key\"\nprevious_secret_file = \"/fake/old.key\"\n\
         [[keys]]\nid = \"rotated\"\nsecret_file = \"/fake/billing.key\"\nprevious_secret_env = \"RG_FAKE_ONLY_UNSET\"\n"
    );
    let config = Config::parse_with(&text, "t.toml", &fake()).unwrap();
    let secrets =
        |id: &str| -> Vec<&[u8]> { config.keys[id].secrets().map(Secret::expose).collect() };
    assert_eq!(
        secrets("env"),
        [&b"from-the-fake-env"[..], &b"old-secret"[..]]
    );
    assert!(!config.keys["env"].inline);
    assert_eq!(
        secrets("file"),
        [&b"file-secret"[..], &b"old-file-secret"[..]],
        "one trailing CRLF trimmed"
    );
    assert_eq!(
        secrets("rotated"),
        [&b"file-secret"[..]],
        "an unset previous secret is normal"
    );
    // The process has none of these: the real environment was not read.
    assert!(std::env::var("RG_FAKE_ONLY_BILLING").is_err());
    assert!(Config::parse(&text, "t.toml").is_err());
}

#[test]
fn key_hash_secret_env_is_read_like_every_secret_env() {
    let set = format!("{MINIMAL}[store]\nkey_hash_secret_env = \"RG_FAKE_ONLY_BILLING\"\n");
    let config = Config::parse_with(&set, "t.toml", &fake()).unwrap();
    let secret = config.store.key_hash_secret.as_ref().map(Secret::expose);
    assert_eq!(secret, Some(&b"from-the-fake-env"[..]));
    assert!(!format!("{config:?}").contains("from-the-fake-env"));
    let unset = Config::parse_with(MINIMAL, "t.toml", &fake()).unwrap();
    assert!(unset.store.key_hash_secret.is_none());
    for name in ["RG_FAKE_ONLY_EMPTY", "RG_FAKE_ONLY_UNSET"] {
        let text = format!("{MINIMAL}[store]\nkey_hash_secret_env = \"{name}\"\n");
        let errs = Config::parse_with(&text, "t.toml", &fake())
            .unwrap_err()
            .errors;
        assert!(errs[0].starts_with("t.toml:5:23:"), "{errs:?}");
        assert!(errs[0].contains(name), "{errs:?}");
    }
}

#[test]
fn injected_environment_problems_keep_their_messages() {
    let text = format!(
        "{MINIMAL}[[keys]]\nid = \"a\"\nsecret_env = \"RG_FAKE_ONLY_EMPTY\"\n\
         [[keys]]\nid = \"b\"\nsecret_file = \"/fake/missing.key\"\n\
         [[keys]]\nid = \"c\"\nsecret_file = \"/fake/empty.key\"\n"
    );
    let errs = Config::parse_with(&text, "t.toml", &fake())
        .unwrap_err()
        .errors;
    assert_eq!(
        errs,
        [
            "t.toml:6:14: environment variable RG_FAKE_ONLY_EMPTY is not set or empty: export it, or use secret_file",
            "t.toml:9:15: cannot read secret file /fake/missing.key: not in the fake",
            "t.toml:12:15: secret file /fake/empty.key is empty",
        ]
    );
    assert!(!errs.concat().contains("from-the-fake-env"));
}

#[test]
fn dynamodb_region_comes_from_the_injected_environment() {
    let text =
        format!("{MINIMAL}[store]\nkind = \"dynamodb\"\n[store.dynamodb]\ntable = \"rg-t\"\n");
    let config = Config::parse_with(&text, "t.toml", &fake()).unwrap();
    assert_eq!(config.store.dynamodb.unwrap().region, "eu-north-1");
    let errs = Config::parse_with(&text, "t.toml", &FakeEnvironment::default())
        .unwrap_err()
        .errors;
    assert_eq!(
        errs,
        ["t.toml:6:1: [store.dynamodb] has no region: write region = \"us-east-1\" (or set AWS_REGION)"]
    );
}

#[test]
fn secret_debug_is_redacted() {
    let text = format!("{MINIMAL}[[keys]]\nid = \"k\"\nsecret = \"hunter2-very-secret\"\n");
    let config = Config::parse(&text, "t.toml").unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn rate_limit_divides_by_replicas() {
    let text = format!("{MINIMAL}[[routes]]\nname = \"r\"\npath = \"/r\"\nrate_limit = {{ per_second = 90, burst = 30, replicas = 3 }}\n");
    let config = Config::parse(&text, "t.toml").unwrap();
    let rate = config.routes[0].rate_limit.unwrap();
    assert_eq!(rate.quota.get(), 30);
    assert_eq!(rate.burst.get(), 10);
}

#[test]
fn a_cluster_rate_limit_is_not_divided_and_a_bad_scope_is_reported() {
    let text = format!("{MINIMAL}[[routes]]\nname = \"r\"\npath = \"/r\"\nrate_limit = {{ per_second = 90, burst = 30, replicas = 3, scope = \"cluster\" }}\n");
    let config = Config::parse(&text, "t.toml").unwrap();
    let rate = config.routes[0].rate_limit.unwrap();
    assert_eq!((rate.quota.get(), rate.burst.get()), (90, 30));
    assert_eq!(rate.scope, RateScope::Cluster);
    assert_eq!(rate.replicas.get(), 3, "the fallback's divisor");
    let text = format!("{MINIMAL}[[routes]]\nname = \"r\"\npath = \"/r\"\nrate_limit = {{ per_second = 9, scope = \"global\" }}\n");
    let error = Config::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(error.contains("scope \"global\" is not"), "{error}");
    assert!(error.contains("t.toml:"), "{error}");
}
