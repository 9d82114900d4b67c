//! The block page server (`[block_page]`) over real HTTP on loopback: 451 with
//! `Link: rel="blocked-by"` for a legal list, 403 for a security list, a neutral 200 for hosts
//! not blocked, HEAD, the favicon, English or Vietnamese by Accept-Language, HTML escaping of
//! what lists carry, per-category block addresses (in DNS answers over the UDP fast path and
//! TCP, and on the page reached on them), and the page as headless Chromium renders it.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;
use reqwest::{StatusCode, header};

use crate::support::*;

/// The category with its own block address, and that address (a loopback one, so the test
/// can serve the page on it).
const CATEGORY_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const CATEGORY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10);
const REFERENCE: &str = "Quyết định 123/QĐ-BTTTT";
const LEGAL_LINK: &str = "https://isp.example.net/blocking";

/// A server with a legal CSV feed (gambling, with a reference; one entry carrying markup), a
/// security list, and the block page on 127.0.0.1 and on the gambling category's address.
async fn start(h: &Hierarchy) -> TestServer {
    let files = vec![
        (
            "authority.csv",
            format!(
                "domain,category,reference,added\n\
                 casino.corp.test,gambling,{REFERENCE},2026-01-02\n\
                 evil.corp.test,<b>adult</b>,\"<script>alert('x')</script> & co\",2026-01-03\n"
            ),
        ),
        ("security.txt", "malware.corp.test\n".to_string()),
    ];
    let extra = format!(
        r#"
[block_page]
listen = ["127.0.0.1:0", "{CATEGORY_V4}:0"]
operator = "Example ISP"
contact = "abuse@example.net"
appeal_url = "https://appeal.example.net/"
legal_link = "{LEGAL_LINK}"

[[block_page.categories]]
name = "gambling"
ipv4 = "{CATEGORY_V4}"
ipv6 = "{CATEGORY_V6}"

[[lists]]
name = "authority"
path = "authority.csv"
basis = "legal"

[[lists]]
name = "security"
path = "security.txt"
format = "plain"
basis = "security"
category = "malware"
"#
    );
    TestServer::start(
        h,
        Setup {
            mode: Mode::Forward,
            files,
            extra,
            ..Setup::default()
        },
    )
    .await
}

/// The page addresses: (general, the gambling category's).
fn page_addrs(server: &TestServer) -> (SocketAddr, SocketAddr) {
    let addrs = &server.running.as_ref().unwrap().block_page_addrs;
    assert_eq!(addrs.len(), 2, "both page listeners bound: {addrs:?}");
    (addrs[0], addrs[1])
}

/// A plain HTTP client that sends `host` to `addr` (as a browser the DNS pointed there would).
async fn get(
    method: reqwest::Method,
    addr: SocketAddr,
    host: &str,
    path: &str,
    accept_language: Option<&str>,
) -> (StatusCode, header::HeaderMap, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(host, addr)
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let mut req = client.request(method, format!("http://{host}:{}{path}", addr.port()));
    if let Some(l) = accept_language {
        req = req.header(header::ACCEPT_LANGUAGE, l);
    }
    let response = req.send().await.expect("the page server answers");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

fn header(headers: &header::HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_page_statuses_languages_and_escaping() {
    let h = Hierarchy::start().await;
    let server = start(&h).await;
    let (page, _) = page_addrs(&server);
    let get_page = |host: &'static str, lang: Option<&'static str>| {
        get(reqwest::Method::GET, page, host, "/", lang)
    };

    // A legal list: 451 (RFC 7725) with the link to the blocking party, and every detail.
    let (status, headers, body) = get_page("casino.corp.test", None).await;
    assert_eq!(status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, "{body}");
    assert_eq!(
        header(&headers, header::LINK),
        format!("<{LEGAL_LINK}>; rel=\"blocked-by\"")
    );
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-store");
    assert_eq!(
        header(&headers, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_eq!(header(&headers, header::CONTENT_LANGUAGE), "en");
    for want in [
        "This website has been blocked",
        "casino.corp.test",
        "gambling",
        "Order of a competent authority",
        REFERENCE,
        ">authority<",
        "Example ISP",
        "abuse@example.net",
        "href=\"https://appeal.example.net/\"",
        " UTC",
        "HTTP 451",
    ] {
        assert!(body.contains(want), "451 page lacks {want:?}:\n{body}");
    }
    // Nothing is loaded from elsewhere.
    assert!(!body.contains("src=") && !body.contains("<link"), "{body}");

    // A security list: 403, no Link header.
    let (status, headers, body) = get_page("www.malware.corp.test", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(headers.get(header::LINK).is_none());
    for want in [
        "www.malware.corp.test",
        "malware",
        "Security threat",
        ">security<",
    ] {
        assert!(body.contains(want), "403 page lacks {want:?}:\n{body}");
    }
    assert!(!body.contains("Legal reference"), "{body}");

    // A host not blocked, and an address literal: a neutral page without details.
    for host in ["www.corp.test", "127.0.0.1"] {
        let (status, headers, body) = get_page(host, None).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        assert_eq!(header(&headers, header::CACHE_CONTROL), "no-store");
        assert!(body.contains("There is no website here"), "{body}");
        assert!(!body.contains(host) && !body.contains("blocked"), "{body}");
    }

    // HEAD: the same status and headers, no body.
    let (_, _, full) = get_page("casino.corp.test", None).await;
    let (status, headers, body) =
        get(reqwest::Method::HEAD, page, "casino.corp.test", "/", None).await;
    assert_eq!(status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert!(body.is_empty());
    assert!(headers.get(header::LINK).is_some());
    assert_eq!(
        header(&headers, header::CONTENT_LENGTH),
        full.len().to_string()
    );

    // The favicon a browser asks for next, and a method the page does not take.
    let (status, headers, _) = get(
        reqwest::Method::GET,
        page,
        "casino.corp.test",
        "/favicon.ico",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-store");
    let (status, ..) = get(reqwest::Method::POST, page, "casino.corp.test", "/", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // Accept-Language picks Vietnamese or English by q-value; English by default.
    let (_, headers, vi) = get_page("casino.corp.test", Some("vi-VN,vi;q=0.9,en;q=0.8")).await;
    assert_eq!(header(&headers, header::CONTENT_LANGUAGE), "vi");
    for want in [
        "Trang web này đã bị chặn",
        "Căn cứ pháp lý",
        "Theo quyết định của cơ quan nhà nước có thẩm quyền",
        "gửi khiếu nại",
        REFERENCE,
    ] {
        assert!(vi.contains(want), "Vietnamese page lacks {want:?}:\n{vi}");
    }
    for lang in [
        "en-US,en;q=0.9,vi;q=0.8",
        "fr-FR, fr;q=0.9",
        "vi;q=0, en;q=0.1",
    ] {
        let (_, headers, en) = get_page("casino.corp.test", Some(lang)).await;
        assert_eq!(header(&headers, header::CONTENT_LANGUAGE), "en", "{lang}");
        assert!(en.contains("This website has been blocked"), "{lang}");
    }
    let (_, _, neutral_vi) = get_page("www.corp.test", Some("vi")).await;
    assert!(neutral_vi.contains("Không có trang web nào ở đây"));

    // What lists carry is escaped, never markup.
    let (status, _, body) = get_page("evil.corp.test", None).await;
    assert_eq!(status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert!(body.contains("&lt;b&gt;adult&lt;/b&gt;"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"),
        "{body}"
    );
    assert!(
        !body.contains("<script") && !body.contains("<b>adult"),
        "{body}"
    );

    let metrics = server.metrics().await;
    let count = |status: &str| {
        metric_sum(
            &metrics,
            "rampart_block_page_requests_total",
            &[&format!("status=\"{status}\"")],
        )
    };
    assert_eq!(count("451"), 8.0, "{metrics}");
    assert_eq!(count("403"), 1.0);
    assert_eq!(count("200"), 3.0);
    assert_eq!(count("204"), 1.0);
    assert_eq!(count("405"), 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_address_answers_its_names_and_tells_the_page_the_category() {
    let h = Hierarchy::start().await;
    let server = start(&h).await;
    let (general, category) = page_addrs(&server);

    // DNS: names of the category get its own addresses, over the UDP fast path and over TCP
    // (the general path); other blocked names get the [block] ones.
    for t in [Transport::Udp, Transport::Tcp] {
        for _ in 0..2 {
            let a = ask(server.dns, t, "www.casino.corp.test.", RecordType::A).await;
            assert_eq!(a_records(&a), vec![CATEGORY_V4], "{t:?}");
            let aaaa = ask(server.dns, t, "casino.corp.test.", RecordType::AAAA).await;
            assert_eq!(aaaa_records(&aaaa), vec![CATEGORY_V6], "{t:?}");
            let other = ask(server.dns, t, "malware.corp.test.", RecordType::A).await;
            assert_eq!(a_records(&other), vec![Ipv4Addr::LOCALHOST], "{t:?}");
        }
    }

    // The wire fast path writes the same bytes as the general path (TCP never takes it).
    for (name, qtype) in [
        ("casino.corp.test.", RecordType::A),
        ("x.casino.corp.test.", RecordType::AAAA),
    ] {
        let q = query_message(name, qtype, true).to_vec().unwrap();
        let udp = exchange_bytes(server.dns, Transport::Udp, &q).await;
        let tcp = exchange_bytes(server.dns, Transport::Tcp, &q).await;
        assert_eq!(udp, tcp, "{name} {qtype}");
    }

    // The page reached on the category's address knows the category without the host name
    // (a browser that came by address, or one whose HTTPS attempt gave no name).
    for host in ["127.0.0.10", "www.corp.test"] {
        let (status, headers, body) = get(reqwest::Method::GET, category, host, "/", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}: {body}");
        assert!(headers.get(header::LINK).is_none());
        assert!(
            body.contains("Access to a website in the category “gambling” has been blocked"),
            "{host}: {body}"
        );
        assert!(!body.contains("www.corp.test"), "{body}");
    }
    let (_, _, vi) = get(
        reqwest::Method::GET,
        category,
        "127.0.0.10",
        "/",
        Some("vi"),
    )
    .await;
    assert!(vi.contains("thuộc danh mục “gambling” đã bị chặn"), "{vi}");
    // A blocked Host on the category address gets the full page.
    let (status, _, body) = get(
        reqwest::Method::GET,
        category,
        "casino.corp.test",
        "/",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert!(body.contains(REFERENCE));
    // The general address cannot tell: neutral.
    let (status, _, body) = get(reqwest::Method::GET, general, "127.0.0.1", "/", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

/// Chromium, or None after saying why the browser test is skipped. Panics when
/// RAMPART_REQUIRE_CHROMIUM=1 and it is missing.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|p| dir.join(p)))
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("RAMPART_REQUIRE_CHROMIUM").is_none_or(|v| v != "1"),
            "RAMPART_REQUIRE_CHROMIUM=1 but chromium is not installed: apt-get install chromium"
        );
        eprintln!("SKIPPED: chromium is not installed (the block page browser test needs it)");
    }
    found
}

/// Load `url` in headless Chromium with `host` mapped to `addr` and return the DOM it built.
/// Bounded: a browser that hangs is killed.
fn dump_dom(chromium: &Path, host: &str, addr: SocketAddr, url: &str, lang: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dom.html");
    let err = dir.path().join("stderr.txt");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--host-resolver-rules=MAP {host} {addr}"))
        // --accept-lang sets the Accept-Language header in headless mode (--lang does not).
        .arg(format!("--accept-lang={lang}"))
        .arg("--dump-dom")
        .arg(url)
        // Chromium writes caches under $HOME: keep them in the temporary folder.
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish in 60 s:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.success() && !dom.is_empty(),
        "chromium failed ({status}):\n{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_block_page_in_english_and_vietnamese() {
    let Some(chromium) = chromium() else {
        return;
    };
    let h = Hierarchy::start().await;
    let server = start(&h).await;
    let (page, _) = page_addrs(&server);
    let host = "casino.corp.test";
    let load = |lang: &'static str| {
        let chromium = chromium.clone();
        tokio::task::spawn_blocking(move || {
            dump_dom(&chromium, host, page, &format!("http://{host}/"), lang)
        })
    };
    let en = load("en-US,en").await.unwrap();
    for want in [
        "This website has been blocked",
        host,
        "gambling",
        REFERENCE,
        "Order of a competent authority",
    ] {
        assert!(en.contains(want), "the English page lacks {want:?}:\n{en}");
    }
    let vi = load("vi-VN,vi").await.unwrap();
    for want in [
        "Trang web này đã bị chặn",
        host,
        "Danh mục",
        "gambling",
        "Căn cứ pháp lý",
        REFERENCE,
    ] {
        assert!(
            vi.contains(want),
            "the Vietnamese page lacks {want:?}:\n{vi}"
        );
    }
    let metrics = server.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "rampart_block_page_requests_total",
            &["status=\"451\""]
        ) >= 2.0
    );
    server.stop().await;
}
