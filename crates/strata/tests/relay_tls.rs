//! TLS between agents and the relay, with certificates made by openssl in
//! the test: server authentication, mutual TLS, and refusals (an agent
//! trusting another CA, an agent without a client certificate).

mod relay_support;

use relay_support::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, signed by the CA; and a second, unrelated CA.
fn make_pki(dir: &Path) -> bool {
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("cli.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let key = ["-newkey", "rsa:2048", "-nodes"];
    let ok = |a: &[&str]| openssl(dir, a);
    ok(&[
        &["req", "-x509"][..],
        &key,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=strata-test-ca",
        ],
    ]
    .concat())
        && ok(&[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "other.key",
                "-out",
                "other.pem",
                "-days",
                "2",
                "-subj",
                "/CN=other-ca",
            ],
        ]
        .concat())
        && ok(&[
            &["req"][..],
            &key,
            &[
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat())
        && ok(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "srv.ext",
        ])
        && ok(&[
            &["req"][..],
            &key,
            &[
                "-keyout",
                "cli.key",
                "-out",
                "cli.csr",
                "-subj",
                "/CN=agent",
            ],
        ]
        .concat())
        && ok(&[
            "x509",
            "-req",
            "-in",
            "cli.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cli.pem",
            "-days",
            "2",
            "-extfile",
            "cli.ext",
        ])
}

#[test]
fn agents_stream_over_tls_and_mutual_tls_and_bad_peers_are_refused() {
    let Some(src) = shared_trace("bt-lttng-tracefile-rotation/kernel") else {
        return;
    };
    let s = Setup::new();
    let d = s.dir.path();
    if !make_pki(d) {
        println!("SKIP: openssl could not make test certificates (scripts/install-deps)");
        return;
    }
    let p = |n: &str| d.join(n).display().to_string();
    let src_s = src.display().to_string();
    let replay = |relay: &Relay, host: &str, tls: &[String]| {
        let mut args: Vec<String> = vec![
            "--replay".into(),
            src_s.clone(),
            "--host-id".into(),
            host.into(),
            "--rate".into(),
            "0".into(),
        ];
        args.extend(tls.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Agent::start(relay.ingest, &s, &refs)
    };

    // Server authentication only.
    let relay = Relay::start(
        &s,
        &["--tls-cert", &p("srv.pem"), "--tls-key", &p("srv.key")],
    );
    let mut a = replay(
        &relay,
        "tls1",
        &[
            "--ca".into(),
            p("ca.pem"),
            "--tls-name".into(),
            "localhost".into(),
        ],
    );
    assert!(a.wait(Duration::from_secs(60)), "{}", a.log());
    assert!(
        relay
            .log()
            .contains("host tls1 session strata connected (strata-agent"),
        "{}",
        relay.log()
    );
    assert!(relay.log().contains(", TLS, "), "{}", relay.log());
    let hosts = relay.json("/api/hosts");
    assert_eq!(hosts["hosts"][0]["tls"], true);
    assert_eq!(hosts["hosts"][0]["events"], 12_305);

    // An agent trusting another CA refuses the relay; a plaintext agent is
    // dropped by the relay.
    let mut bad = replay(
        &relay,
        "tls2",
        &[
            "--ca".into(),
            p("other.pem"),
            "--tls-name".into(),
            "localhost".into(),
            "-d".into(),
            "3s".into(),
        ],
    );
    let _ = bad.wait(Duration::from_secs(30));
    assert!(!relay.log().contains("host tls2"), "{}", relay.log());
    let mut plain = replay(
        &relay,
        "plain",
        &["--insecure".into(), "-d".into(), "3s".into()],
    );
    let _ = plain.wait(Duration::from_secs(30));
    assert!(
        relay.wait_log("(tls)", Duration::from_secs(5)),
        "{}",
        relay.log()
    );
    assert!(!relay.log().contains("host plain"), "{}", relay.log());
    drop(relay);

    // Mutual TLS: a client certificate from the CA is required.
    let s2 = Setup::new();
    let relay = Relay::start(
        &s2,
        &[
            "--tls-cert",
            &p("srv.pem"),
            "--tls-key",
            &p("srv.key"),
            "--client-ca",
            &p("ca.pem"),
        ],
    );
    let replay2 = |host: &str, tls: &[String]| {
        let mut args: Vec<String> = vec![
            "--replay".into(),
            src_s.clone(),
            "--host-id".into(),
            host.into(),
            "--rate".into(),
            "0".into(),
            "--ca".into(),
            p("ca.pem"),
            "--tls-name".into(),
            "localhost".into(),
        ];
        args.extend(tls.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Agent::start(relay.ingest, &s2, &refs)
    };
    let mut no_cert = replay2("nocert", &["-d".into(), "3s".into()]);
    let _ = no_cert.wait(Duration::from_secs(30));
    assert!(
        relay.wait_log("(tls)", Duration::from_secs(5)),
        "{}",
        relay.log()
    );
    assert!(!relay.log().contains("host nocert"), "{}", relay.log());
    let mut with_cert = replay2(
        "mtls",
        &["--cert".into(), p("cli.pem"), "--key".into(), p("cli.key")],
    );
    assert!(
        with_cert.wait(Duration::from_secs(60)),
        "{}",
        with_cert.log()
    );
    let hosts = relay.json("/api/hosts");
    let h = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "mtls")
        .cloned()
        .unwrap();
    assert_eq!(h["events"], 12_305);
}
