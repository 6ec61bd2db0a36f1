//! What arrives on the wire, spoken as raw bytes over a `TcpStream` so the
//! framing is exactly what an attacker would send:
//!
//! - `framing`: request smuggling (Content-Length against
//!   Transfer-Encoding, duplicate or invalid lengths, obs-fold, bare LF,
//!   chunked trailers, broken chunks) and duplicate Host headers;
//! - `limits`: header count, head size, URI length and body size;
//! - `connections`: slow and silent clients, idle keep-alive and the
//!   connection cap.
//!
//! A real upstream that records what it receives, the real proxy on
//! loopback. Every case asserts the status the client got *and* what the
//! upstream received — for a refusal, nothing.

mod support;

use std::time::{Duration, Instant};

use support::client::{nonce, Req};
use support::config;
use support::proxy::{TestProxy, T0};
use support::raw::{
    expect_raw, expect_refused_and_closed, raw, read_until_close, signed_raw, WAIT,
};
use support::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The hostile-input config ([`config::guarded`]) in front of a fresh
/// recording upstream; `extra` goes into `[server]`.
async fn setup(extra: &str) -> (Upstream, TestProxy) {
    TestProxy::with_upstream(extra, &config::guarded()).await
}

/// Payments, orders and a pass-through ([`config::payments_and_orders`])
/// in front of a fresh recording upstream; `extra` goes into `[server]`.
async fn setup_payments(extra: &str) -> (Upstream, TestProxy) {
    TestProxy::with_upstream(extra, &config::payments_and_orders()).await
}

// ------------------------------------------------------------ framing

mod framing {
    use super::*;

    #[tokio::test]
    async fn content_length_and_transfer_encoding_in_either_order_are_framed_by_chunked_and_closed()
    {
        let (upstream, proxy) = setup("").await;
        let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        for (name, head) in [
            (
                "CL then TE",
                "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
            ),
            (
                "TE then CL",
                "Transfer-Encoding: chunked\r\nContent-Length: 44\r\n",
            ),
            (
                "CL, TE and CL again",
                "Content-Length: 44\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            ),
        ] {
            let before = upstream.count();
            let request = format!(
                "POST /public/a HTTP/1.1\r\nHost: x\r\n{head}\r\n3\r\nabc\r\n0\r\n\r\n{smuggled}"
            );
            let answer = expect_raw(proxy.addr, &request, &[200], name).await;
            assert!(answer.closed, "{name}: the connection must close");
            assert!(
                answer
                    .text
                    .to_ascii_lowercase()
                    .contains("connection: close"),
                "{name}: {answer:?}"
            );
            let seen = upstream.seen();
            assert_eq!(seen.len(), before + 1, "{name}: {:?}", upstream.paths());
            let got = &seen[before];
            assert_eq!(got.path_and_query, "/public/a", "{name}");
            assert_eq!(&got.body[..], b"abc", "{name}: framed by chunked");
            assert!(
                !(got.headers.contains_key("content-length")
                    && got.headers.contains_key("transfer-encoding")),
                "{name}: forwarded with both framings"
            );
            if let Some(length) = got.headers.get("content-length") {
                assert_eq!(length, "3", "{name}: a client Content-Length leaked");
            }
        }
        // On a protected route the same request still passes every check
        // before anything is forwarded, and nothing behind it runs.
        let request = format!(
            "POST /payments HTTP/1.1\r\nHost: x\r\nX-Client: alice\r\nX-Request-Timestamp: {T0}\r\nX-Request-Nonce: {}\r\n\
             Content-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n3\r\npay\r\n0\r\n\r\n\
             POST /payments HTTP/1.1\r\nHost: x\r\n\r\n",
            nonce(1)
        );
        let answer = expect_raw(proxy.addr, &request, &[200], "").await;
        assert!(answer.closed);
        assert_eq!(
            upstream.paths(),
            vec!["/public/a", "/public/a", "/public/a", "/payments"]
        );
        assert_eq!(&upstream.seen()[3].body[..], b"pay");
        assert!(upstream.paths().iter().all(|p| !p.contains("smuggled")));
    }

    #[tokio::test]
    async fn duplicate_equal_content_length_is_normalised_and_conflicting_or_invalid_is_refused() {
        let (upstream, proxy) = setup("").await;
        // Two equal values: one request, one Content-Length upstream.
        expect_raw(
            proxy.addr,
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            &[200],
            "",
        )
        .await;
        let seen = upstream.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(&seen[0].body[..], b"abc");
        assert_eq!(seen[0].headers.get_all("content-length").iter().count(), 1);

        // Conflicting or unparseable lengths: the HTTP layer's bare 400, the
        // connection closed, nothing forwarded — including whatever the second
        // length would have framed as a next request.
        for (name, head) in [
            ("conflicting", "Content-Length: 3\r\nContent-Length: 48\r\n"),
            ("comma list", "Content-Length: 3, 48\r\n"),
            ("comma list equal", "Content-Length: 3, 3\r\n"),
            ("sign", "Content-Length: +3\r\n"),
            ("negative", "Content-Length: -3\r\n"),
            ("hex", "Content-Length: 0x3\r\n"),
            ("space inside", "Content-Length: 3 3\r\n"),
            ("overflow", "Content-Length: 99999999999999999999999\r\n"),
            ("empty", "Content-Length: \r\n"),
        ] {
            let request = format!(
                "POST /public/a HTTP/1.1\r\nHost: x\r\n{head}\r\nabcGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
            );
            expect_refused_and_closed(proxy.addr, &request, 400, name).await;
        }
        assert_eq!(upstream.paths(), vec!["/public/a"]);
    }

    #[tokio::test]
    async fn transfer_encoding_not_ending_in_chunked_is_refused() {
        let (upstream, proxy) = setup("").await;
        for (name, head) in [
            ("gzip", "Transfer-Encoding: gzip\r\n"),
            ("chunked then gzip", "Transfer-Encoding: chunked, gzip\r\n"),
            (
                "second line not chunked",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            ),
            ("unknown coding", "Transfer-Encoding: xchunked\r\n"),
            (
                "with Content-Length",
                "Transfer-Encoding: identity\r\nContent-Length: 3\r\n",
            ),
        ] {
            let request = format!(
                "POST /public/a HTTP/1.1\r\nHost: x\r\n{head}\r\n3\r\nabc\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
            );
            expect_refused_and_closed(proxy.addr, &request, 400, name).await;
        }
        // HTTP/1.0 has no chunked coding at all.
        expect_raw(
            proxy.addr,
            b"POST /public/a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[400],
            "",
        )
        .await;
        assert_eq!(upstream.count(), 0, "{:?}", upstream.paths());
    }

    #[tokio::test]
    async fn obs_fold_header_lines_are_refused() {
        let (upstream, proxy) = setup("").await;
        for (name, request) in [
            (
                "folded end-to-end header",
                "GET /public/a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
            ),
            (
                "folded Transfer-Encoding",
                "POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ),
            (
                "folded replay header on a protected route",
                "POST /payments HTTP/1.1\r\nHost: x\r\nX-Request-Timestamp:\r\n 1764326400\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                "tab fold",
                "GET /public/a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n\r\n",
            ),
        ] {
            expect_refused_and_closed(proxy.addr, &request, 400, name).await;
        }
        assert_eq!(upstream.count(), 0, "{:?}", upstream.paths());
    }

    #[tokio::test]
    async fn bare_lf_line_endings_are_normalised_into_exactly_the_requests_sent() {
        // httparse accepts a bare LF as a line ending (RFC 9112 §2.2 allows a
        // recipient to). The proxy re-serialises every request for the
        // upstream with CRLF, so the upstream sees exactly the requests the
        // proxy framed — never a different split.
        let (upstream, proxy) = setup("").await;
        let answer = expect_raw(
            proxy.addr,
            b"POST /public/a HTTP/1.1\nHost: x\nContent-Length: 3\nX-Bare: lf\n\nabcGET /public/b HTTP/1.1\nHost: x\nConnection: close\n\n",
            &[200, 200],
            "",
        )
        .await;
        assert!(answer.closed);
        let seen = upstream.seen();
        assert_eq!(upstream.paths(), vec!["/public/a", "/public/b"]);
        assert_eq!(&seen[0].body[..], b"abc");
        assert_eq!(seen[0].headers["x-bare"], "lf");

        // A bare CR is not a line ending: refused.
        expect_raw(
            proxy.addr,
            b"GET /public/c HTTP/1.1\rHost: x\r\nX-Cr: a\rGET /public/smuggled HTTP/1.1\r\n\r\n",
            &[400],
            "",
        )
        .await;
        // A protected route read with bare LF still gets its checks.
        let answer = expect_raw(
            proxy.addr,
            b"POST /payments HTTP/1.1\nHost: x\nContent-Length: 0\nConnection: close\n\n",
            &[400],
            "",
        )
        .await;
        assert_eq!(answer.reason(), "missing_timestamp");
        assert_eq!(upstream.paths(), vec!["/public/a", "/public/b"]);
    }

    #[tokio::test]
    async fn a_request_hidden_in_a_chunked_trailer_never_reaches_the_upstream() {
        let (upstream, proxy) = setup("").await;
        // A request line where trailer fields belong: not a field line, so the
        // body fails to parse. On a pass-through route the head may already be
        // on its way upstream, but neither the trailer text nor a second
        // request ever is.
        let answer = raw(
            proxy.addr,
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            WAIT,
        )
        .await;
        assert!(answer.closed, "{answer:?}");
        assert!(answer.statuses().len() <= 1, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            upstream.paths().iter().all(|p| p == "/public/a"),
            "{:?}",
            upstream.paths()
        );
        // Well-formed trailer fields are never forwarded as headers (the
        // proxy strips `Trailer`/`TE`, so hyper drops trailers upstream), and
        // they never start a second request.
        let before = upstream.count();
        expect_raw(
            proxy.addr,
            b"POST /public/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Smuggle\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Smuggle: GET /public/smuggled HTTP/1.1\r\nX-Request-Nonce: trailer-nonce-0000000001\r\n\r\n",
            &[200],
            "",
        )
        .await;
        let seen = upstream.seen();
        assert_eq!(seen.len(), before + 1);
        let got = &seen[before];
        assert_eq!(got.path_and_query, "/public/t");
        assert_eq!(&got.body[..], b"abc");
        assert!(!got.headers.contains_key("x-smuggle"));
        assert!(!got.headers.contains_key("trailer"));
        // A replay header arriving as a trailer does not satisfy a protected
        // route: checks read the head only.
        let request = format!(
            "POST /payments HTTP/1.1\r\nHost: x\r\nX-Client: alice\r\nX-Request-Timestamp: {T0}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Request-Nonce\r\nConnection: close\r\n\r\n3\r\npay\r\n0\r\nX-Request-Nonce: {}\r\n\r\n",
            nonce(7)
        );
        let answer = expect_raw(proxy.addr, &request, &[400], "").await;
        assert_eq!(answer.reason(), "missing_nonce");
        assert!(upstream.paths().iter().all(|p| !p.contains("smuggled")));
        assert!(upstream.paths().iter().all(|p| p != "/payments"));
    }

    #[tokio::test]
    async fn a_broken_chunked_body_on_a_pass_through_route_is_the_clients_fault() {
        // Streaming means the head is already upstream when the body turns
        // out to be broken: the upstream sees an aborted request (never a
        // second one), and the client is told it was its own fault.
        let (upstream, proxy) = setup("").await;
        let answer = expect_raw(
            proxy.addr,
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
            "",
        )
        .await;
        assert_eq!(answer.reason(), "malformed_request");
        assert!(upstream.paths().iter().all(|p| p == "/public/a"));
    }

    #[tokio::test]
    async fn broken_chunk_framing_on_a_protected_route_is_refused_before_forwarding() {
        let (upstream, proxy) = setup("").await;
        for (i, (name, chunks)) in [
            ("hex prefix", "0x3\r\nabc\r\n0\r\n\r\n"),
            ("negative size", "-3\r\nabc\r\n0\r\n\r\n"),
            ("size overflow", "fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
            ("short chunk", "5\r\nabc\r\n0\r\n\r\n"),
            ("no CRLF after data", "3\r\nabcX0\r\n\r\n"),
        ]
        .into_iter()
        .enumerate()
        {
            let request = format!(
                "POST /payments HTTP/1.1\r\nHost: x\r\nX-Client: alice\r\nX-Request-Timestamp: {T0}\r\nX-Request-Nonce: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}",
                nonce(100 + i)
            );
            let answer = raw(proxy.addr, request.as_bytes(), WAIT).await;
            let statuses = answer.statuses();
            assert!(
                statuses.is_empty() || statuses == vec![400],
                "{name}: {answer:?}"
            );
            assert!(answer.closed, "{name}: {answer:?}");
        }
        assert_eq!(upstream.count(), 0, "{:?}", upstream.paths());
    }

    #[tokio::test]
    async fn two_host_headers_are_refused_and_never_reach_the_upstream() {
        let (upstream, proxy) = setup("").await;
        let request = signed_raw(
            "/signed",
            &["payments.internal", "evil.example"],
            "payments.internal",
            config::BILLING,
            &nonce(1),
        );
        let answer = expect_raw(proxy.addr, &request, &[400], "").await;
        assert_eq!(answer.reason(), "malformed_request");
        expect_raw(
            proxy.addr,
            b"GET /public/a HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            &[400],
            "",
        )
        .await;
        assert_eq!(upstream.count(), 0, "{:?}", upstream.seen());
    }

    #[tokio::test]
    async fn content_length_with_transfer_encoding_is_never_forwarded_with_both() {
        // hyper frames such a request by Transfer-Encoding alone, drops
        // Content-Length and closes the connection after answering
        // (RFC 9112 §6.1): the bytes behind the chunked body are never read as a
        // second request, and the upstream never sees both headers.
        let (upstream, proxy) = setup_payments("").await;
        let smuggle = b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        let answer = raw(proxy.addr, smuggle, Duration::from_secs(3)).await.text;
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "one answer, then the connection closes: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = upstream.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].path_and_query, "/public/a");
        assert!(!seen[0].headers.contains_key("content-length"));
        assert!(seen[0].body.is_empty());
        // Transfer-Encoding not ending in chunked, and an invalid
        // Content-Length, are refused by the HTTP layer with a bare 400.
        let bad_te = b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd";
        let answer = raw(proxy.addr, bad_te, Duration::from_secs(3)).await.text;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let bad_length = b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcd";
        let answer = raw(proxy.addr, bad_length, Duration::from_secs(3))
            .await
            .text;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(upstream.count(), 1);
    }
}

// ------------------------------------------------------------- limits

mod limits {
    use super::*;

    #[tokio::test]
    async fn too_many_headers_or_a_huge_head_is_431_and_not_forwarded() {
        let (upstream, proxy) = setup("").await;
        let mut many = String::from("GET /public/a HTTP/1.1\r\nHost: x\r\n");
        for i in 0..150 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let answer = expect_raw(proxy.addr, &many, &[431], "").await;
        assert!(answer.closed);

        let huge = format!(
            "GET /public/a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(80 * 1024)
        );
        let answer = expect_raw(proxy.addr, &huge, &[431], "").await;
        assert!(answer.closed);
        assert_eq!(upstream.count(), 0);
        // 90 ordinary headers are fine.
        let mut fine = String::from("GET /public/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..90 {
            fine.push_str(&format!("X-H{i}: v\r\n"));
        }
        fine.push_str("\r\n");
        expect_raw(proxy.addr, &fine, &[200], "").await;
        assert_eq!(upstream.paths(), vec!["/public/ok"]);
    }

    #[tokio::test]
    async fn a_uri_longer_than_the_head_buffer_is_refused_and_not_forwarded() {
        let (upstream, proxy) = setup("").await;
        // Longer than the 64 KiB head buffer: hyper refuses before routing
        // (431, the whole head is too large). hyper's own 414 applies only to
        // URIs over 65534 bytes that still fit the buffer, which ours cannot.
        let request = format!(
            "GET /public/{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(70 * 1024)
        );
        let answer = raw(proxy.addr, request.as_bytes(), WAIT).await;
        let statuses = answer.statuses();
        assert!(statuses == vec![431] || statuses == vec![414], "{answer:?}");
        assert!(answer.closed);
        assert_eq!(upstream.count(), 0);
    }

    #[tokio::test]
    async fn a_uri_over_8_kib_is_414() {
        let (upstream, proxy) = setup("").await;
        let request = format!(
            "GET /public/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "a".repeat(16 * 1024)
        );
        expect_raw(proxy.addr, &request, &[414], "").await;
        assert_eq!(upstream.count(), 0);
    }

    #[tokio::test]
    async fn a_body_over_max_body_bytes_on_a_protected_route_is_413_and_never_forwarded() {
        let (upstream, proxy) = setup("max_body_bytes = 1024").await;
        // Announced by Content-Length: refused before reading the body, and
        // the unread body is never parsed as a next request.
        let mut request = format!(
            "POST /payments HTTP/1.1\r\nHost: x\r\nX-Client: alice\r\nX-Request-Timestamp: {T0}\r\nX-Request-Nonce: {}\r\nContent-Length: 2000\r\n\r\n",
            nonce(1)
        )
        .into_bytes();
        let mut body = b"GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        body.resize(2000, b'x');
        request.extend_from_slice(&body);
        let answer = expect_raw(proxy.addr, &request, &[413], "").await;
        assert_eq!(answer.reason(), "body_too_large");

        // Chunked, so the size is only known while reading.
        let chunk = "a".repeat(600);
        let request = format!(
            "POST /payments HTTP/1.1\r\nHost: x\r\nX-Client: alice\r\nX-Request-Timestamp: {T0}\r\nX-Request-Nonce: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n",
            nonce(2)
        );
        let answer = expect_raw(proxy.addr, &request, &[413], "").await;
        assert_eq!(answer.reason(), "body_too_large");

        // Exactly at the limit passes.
        let reply = Req::post("/payments")
            .header("X-Client", "alice")
            .fresh(T0, &nonce(3))
            .body(vec![b'z'; 1024])
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(upstream.paths(), vec!["/payments"]);
        assert_eq!(upstream.seen()[0].body.len(), 1024);
    }

    #[tokio::test]
    async fn large_bodies_on_protected_routes_are_413() {
        let (upstream, proxy) = setup_payments("max_body_bytes = 1024").await;
        let reply = Req::post("/payments")
            .header("X-Client", "alice")
            .fresh(T0, &nonce(1))
            .body(vec![b'a'; 2048])
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status_reason(), (413, "body_too_large".into()));
        assert_eq!(upstream.count(), 0);
        // Pass-through routes stream any size.
        let reply = Req::post("/public/upload")
            .body(vec![b'b'; 200_000])
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(upstream.seen()[0].body.len(), 200_000);
    }
}

// -------------------------------------------------------- connections

mod connections {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slowloris_of_500_connections_does_not_stop_a_fresh_client() {
        let (upstream, proxy) = setup("header_read_timeout_ms = 300\nmax_connections = 600").await;
        let addr = proxy.addr;
        // 500 connections that dribble a request head, one header line at a
        // time, and never finish it.
        let mut tasks = Vec::new();
        for i in 0..500 {
            tasks.push(tokio::spawn(async move {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    return (false, Duration::ZERO);
                };
                let started = Instant::now();
                let _ = stream
                    .write_all(b"POST /payments HTTP/1.1\r\nHost: x\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                for n in 0..40 {
                    // Closed by the proxy: a read returns 0 or an error.
                    match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf))
                        .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => return (true, started.elapsed()),
                        Ok(Ok(_)) => return (true, started.elapsed()),
                        Err(_) => {}
                    }
                    if stream
                        .write_all(format!("X-Slow-{i}-{n}: x\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return (true, started.elapsed());
                    }
                }
                (false, started.elapsed())
            }));
        }
        // Let them all connect and start dribbling.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let reply = Req::get("/public/fresh").send(addr).await;
        assert_eq!(reply.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a fresh client waited {:?}",
            started.elapsed()
        );
        let mut closed = 0;
        for task in tasks {
            let (was_closed, after) = task.await.unwrap();
            if was_closed {
                closed += 1;
                assert!(
                    after < Duration::from_secs(3),
                    "closed only after {after:?}"
                );
            }
        }
        assert_eq!(
            closed, 500,
            "every slow head is cut off by header_read_timeout"
        );
        assert_eq!(upstream.paths(), vec!["/public/fresh"]);
    }

    #[tokio::test]
    async fn silent_connections_are_closed_and_cannot_hold_every_slot() {
        // Today a connection that never sends a byte waits forever in
        // hyper-util's HTTP/1-or-2 sniffing, before hyper's header timer
        // starts: `max_connections` silent sockets lock every client out.
        let (upstream, proxy) = setup("header_read_timeout_ms = 300\nmax_connections = 4").await;
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(TcpStream::connect(proxy.addr).await.unwrap());
        }
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(3),
            Req::get("/public/fresh").send(proxy.addr),
        )
        .await
        .expect("a fresh client is served once the silent ones time out");
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() < Duration::from_secs(2));
        for mut stream in silent {
            let answer = read_until_close(&mut stream, Duration::from_secs(1)).await;
            assert!(answer.closed, "a silent connection is held forever");
            assert!(answer.text.is_empty());
        }
        assert_eq!(upstream.paths(), vec!["/public/fresh"]);
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_by_the_header_timeout() {
        let (upstream, proxy) = setup("header_read_timeout_ms = 300").await;
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream
            .write_all(b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let answer = read_until_close(&mut stream, Duration::from_secs(3)).await;
        assert_eq!(answer.statuses(), vec![200], "{answer:?}");
        assert!(
            answer.closed,
            "an idle keep-alive connection is held forever"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(upstream.count(), 1);
    }

    #[tokio::test]
    async fn the_connection_cap_makes_a_third_client_wait_not_fail() {
        let (upstream, proxy) = setup("max_connections = 2\nheader_read_timeout_ms = 10000").await;
        // Two keep-alive connections hold both slots.
        let mut held = Vec::new();
        for i in 0..2 {
            let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
            stream
                .write_all(format!("GET /public/held-{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let answer = read_until_close(&mut stream, Duration::from_millis(300)).await;
            assert_eq!(answer.statuses(), vec![200], "{answer:?}");
            assert!(!answer.closed);
            held.push(stream);
        }
        // The third connects (the kernel queues it) but is not served...
        let mut third = TcpStream::connect(proxy.addr).await.unwrap();
        third
            .write_all(b"GET /public/third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let waiting = read_until_close(&mut third, Duration::from_millis(400)).await;
        assert!(waiting.text.is_empty(), "{waiting:?}");
        assert!(!waiting.closed, "back-pressure, not refusal");
        assert_eq!(upstream.count(), 2);
        // ...until a slot frees up.
        drop(held.remove(0));
        let served = read_until_close(&mut third, WAIT).await;
        assert_eq!(served.statuses(), vec![200], "{served:?}");
        assert_eq!(
            upstream.paths(),
            vec!["/public/held-0", "/public/held-1", "/public/third"]
        );
    }
}
