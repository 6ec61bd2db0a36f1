//! Reload where operators are (issue 20), against the real binary: an
//! edited config file is reloaded without a signal; so is a Kubernetes
//! ConfigMap update (a `..data` symlink swap); an invalid edit keeps the old
//! config serving and counts as a failed reload; `POST /reload` names the
//! changed settings that need a restart; `secret_file` is re-read.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::binary::ProxyProcess;
use support::client::{nonce, Req};
use support::upstream::Upstream;

/// `/open` is forwarded; `/guarded` needs a timestamp when `guarded`.
fn config(upstream: &Upstream, guarded: bool, extra_server: &str) -> String {
    let freshness = if guarded {
        "freshness = { max_skew_secs = 120 }\n"
    } else {
        ""
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{}\"\n{extra_server}\n\
         [[routes]]\nname = \"guarded\"\npath = \"/guarded\"\n{freshness}",
        upstream.url()
    )
}

async fn metric(proxy: &ProxyProcess, series: &str) -> Option<f64> {
    let text = support::metrics::scrape(proxy.admin.unwrap()).await;
    support::metrics::sample(&text, series)
}

/// Wait (bounded) until `series` reads `want`.
async fn until_metric(proxy: &ProxyProcess, series: &str, want: f64) {
    for _ in 0..100 {
        if metric(proxy, series).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{series} never reached {want}: {:?}\n{}",
        metric(proxy, series).await,
        proxy.lines().join("\n")
    );
}

const OK: &str = r#"replay_guard_config_reloads_total{result="ok"}"#;
const ERROR: &str = r#"replay_guard_config_reloads_total{result="error"}"#;

/// Replace `path`'s content the way an editor does: a new file renamed
/// over the old one.
fn save(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-save");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_file_is_reloaded_and_an_invalid_edit_keeps_the_old_config() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay-guard.toml");
    std::fs::write(&path, config(&upstream, false, "")).unwrap();
    let proxy = ProxyProcess::start_path(&path, &[]);
    assert_eq!(Req::get("/guarded").send(proxy.addr).await.status, 200);

    // In place (truncate and write), as `>` in a shell does.
    std::fs::write(&path, config(&upstream, true, "")).unwrap();
    until_metric(&proxy, OK, 1.0).await;
    let reply = Req::get("/guarded").send(proxy.addr).await;
    assert_eq!(
        reply.reason(),
        "missing_timestamp",
        "the new rule is served: {reply:?} {}",
        proxy.lines().join("\n")
    );

    // An invalid edit: counted as a failed reload, the old config serves.
    save(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"nope\"\n",
    );
    until_metric(&proxy, ERROR, 1.0).await;
    assert_eq!(
        metric(&proxy, "replay_guard_config_last_reload_successful").await,
        Some(0.0)
    );
    assert_eq!(
        Req::get("/guarded").send(proxy.addr).await.reason(),
        "missing_timestamp",
        "still the previous config"
    );
    // Fixing the file (an editor's rename) reloads again.
    save(&path, &config(&upstream, false, ""));
    until_metric(&proxy, OK, 2.0).await;
    assert_eq!(Req::get("/guarded").send(proxy.addr).await.status, 200);
    assert_eq!(
        metric(&proxy, "replay_guard_config_last_reload_successful").await,
        Some(1.0)
    );
    // A touch without a change is not a reload.
    std::fs::write(&path, config(&upstream, false, "")).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(metric(&proxy, OK).await, Some(2.0));
    assert_eq!(metric(&proxy, ERROR).await, Some(1.0));
    assert_eq!(upstream.count(), 2, "only the two admitted requests");
}

#[cfg(unix)]
/// A Kubernetes ConfigMap or Secret volume of one file, as the kubelet's
/// atomic writer lays it out: `name` → `..data/name`, `..data` → the
/// current timestamped directory.
struct Mount {
    dir: tempfile::TempDir,
    generation: usize,
}

impl Mount {
    fn new(name: &str, content: &str) -> Mount {
        let mut mount = Mount {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        mount.publish(name, content);
        std::os::unix::fs::symlink(format!("..data/{name}"), mount.dir.path().join(name)).unwrap();
        mount
    }

    /// An update: a new timestamped directory, a new `..data_tmp` link
    /// renamed over `..data`, the old directory removed.
    fn publish(&mut self, name: &str, content: &str) {
        let old = self.generation_dir();
        self.generation += 1;
        let generation = format!("..2026_01_01_00_00_00.{:09}", self.generation);
        let dir = self.dir.path().join(&generation);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(name), content).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        if self.generation > 1 {
            std::fs::remove_dir_all(old).unwrap();
        }
    }

    fn generation_dir(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("..2026_01_01_00_00_00.{:09}", self.generation))
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_reloaded() {
    let upstream = Upstream::start().await;
    let mut mount = Mount::new("replay-guard.toml", &config(&upstream, false, ""));
    let proxy = ProxyProcess::start_path(&mount.path("replay-guard.toml"), &[]);
    assert_eq!(Req::get("/guarded").send(proxy.addr).await.status, 200);

    mount.publish("replay-guard.toml", &config(&upstream, true, ""));

    until_metric(&proxy, OK, 1.0).await;
    assert_eq!(
        Req::get("/guarded").send(proxy.addr).await.reason(),
        "missing_timestamp"
    );
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_names_the_changes_that_need_a_restart() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay-guard.toml");
    // No watcher here: the reload is the admin endpoint's alone.
    std::fs::write(&path, config(&upstream, false, "watch_config = false")).unwrap();
    let proxy = ProxyProcess::start_path(&path, &[]);
    let admin = proxy.admin.unwrap();

    let reply = Req::post("/reload").send(admin).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "reloaded", "restart_required": []})
    );

    let moved = config(
        &upstream,
        true,
        "watch_config = false\nworkers = 3\nmax_connections = 77",
    )
    .replace(
        "listen = \"127.0.0.1:0\"\nadmin",
        "listen = \"127.0.0.1:1\"\nadmin",
    );
    std::fs::write(&path, moved).unwrap();
    let reply = Req::post("/reload").send(admin).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.json()["restart_required"],
        serde_json::json!(["listen", "max_connections", "workers"])
    );
    // What can change, did: the route's new rule is served.
    assert_eq!(
        Req::get("/guarded").send(proxy.addr).await.reason(),
        "missing_timestamp"
    );

    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"nope\"\n",
    )
    .unwrap();
    let reply = Req::post("/reload").send(admin).await;
    assert_eq!(reply.status, 422);
    let json = reply.json();
    assert_eq!(json["status"], "invalid");
    assert!(
        json["errors"][0]
            .as_str()
            .unwrap()
            .contains(":3:12: upstream"),
        "{json}"
    );
    assert_eq!(upstream.count(), 0);
}

/// A config with one signed, nonce-checked route `/pay` whose key `billing`
/// is read from `secret`.
fn billing(upstream: &Upstream, secret: &Path, watch: bool) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{}\"\nwatch_config = {watch}\n\
         [[keys]]\nid = \"billing\"\nsecret_file = {:?}\n\
         [[routes]]\nname = \"pay\"\nmethods = [\"POST\"]\npath = \"/pay\"\n\
         freshness = {{ max_skew_secs = 120 }}\nnonce = {{ required = true }}\nsignature = {{ required = true }}\n",
        upstream.url(),
        secret.display().to_string()
    )
}

/// `POST /pay` to `proxy`, signed for `billing` with a secret, nonce `n`.
fn signer(proxy: &ProxyProcess) -> impl Fn(&str, usize) -> Req {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let host = proxy.addr.to_string();
    move |key: &str, n: usize| Req::post("/pay").signed(&host, "billing", key, now, &nonce(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_is_read_again_on_reload() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("billing.key");
    let (old, new) = ("rotation-old-secret-4f1c9a", "rotation-new-secret-77b2e0");
    std::fs::write(&secret, format!("{old}\n")).unwrap();
    let path = dir.path().join("replay-guard.toml");
    std::fs::write(&path, billing(&upstream, &secret, false)).unwrap();
    let proxy = ProxyProcess::start_path(&path, &[]);
    let signed = signer(&proxy);
    assert_eq!(signed(old, 1).send(proxy.addr).await.status, 200);

    // Rotate the file only; the config file is unchanged.
    std::fs::write(&secret, format!("{new}\n")).unwrap();
    assert_eq!(
        signed(new, 2).send(proxy.addr).await.reason(),
        "bad_signature",
        "not before a reload"
    );
    let reply = Req::post("/reload").send(proxy.admin.unwrap()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(signed(new, 3).send(proxy.addr).await.status, 200);
    assert_eq!(
        signed(old, 4).send(proxy.addr).await.reason(),
        "bad_signature",
        "the old secret no longer verifies"
    );
    assert_eq!(upstream.count(), 2);
    assert!(
        proxy
            .lines()
            .iter()
            .all(|l| !l.contains(old) && !l.contains(new)),
        "no secret in a log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_volume_is_reloaded_without_a_config_change() {
    let upstream = Upstream::start().await;
    let (old, new) = ("watched-old-secret-5d2e81", "watched-new-secret-a93c04");
    let mut secret = Mount::new("billing.key", &format!("{old}\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay-guard.toml");
    std::fs::write(&path, billing(&upstream, &secret.path("billing.key"), true)).unwrap();
    let proxy = ProxyProcess::start_path(&path, &[]);
    let signed = signer(&proxy);
    assert_eq!(signed(old, 1).send(proxy.addr).await.status, 200);

    // The Secret is rotated; the config file is not touched.
    secret.publish("billing.key", &format!("{new}\n"));
    until_metric(&proxy, OK, 1.0).await;
    assert_eq!(signed(new, 2).send(proxy.addr).await.status, 200);
    assert_eq!(
        signed(old, 3).send(proxy.addr).await.reason(),
        "bad_signature",
        "the old secret no longer verifies"
    );
    // The same content published again is not a reload.
    secret.publish("billing.key", &format!("{new}\n"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(metric(&proxy, OK).await, Some(1.0));
    assert_eq!(upstream.count(), 2);
    assert!(
        proxy
            .lines()
            .iter()
            .all(|l| !l.contains(old) && !l.contains(new)),
        "no secret in a log line"
    );
}
