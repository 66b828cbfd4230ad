//! Loading real key and trust material: a CA, a server certificate and key written by the
//! `openssl` CLI, as PEM, encrypted PEM and PKCS#12; a JKS file is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::config::{parse_properties, Config};

/// Runs `openssl` with `args` in `dir`, failing the test with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`), a server key (`server.key`, PKCS#8) and certificate (`server.pem`) signed
/// by it, the two in one file (`server-bundle.pem`), the key encrypted (`server-enc.key`,
/// password `keypass`) and a PKCS#12 store of both (`server.p12`, password `storepass`).
fn material() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    );
    issue(
        d,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "server.key",
            "-out",
            "server-enc.key",
            "-passout",
            "pass:keypass",
        ],
    );
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-in",
            "server.pem",
            "-inkey",
            "server.key",
            "-certfile",
            "ca.pem",
            "-out",
            "server.p12",
            "-passout",
            "pass:storepass",
        ],
    );
    dir
}

fn ssl_config(dir: &Path, extra: &str) -> Result<SslConfig, String> {
    let text = format!(
        "node.id=1\nlisteners=PLAINTEXT://:9092,SSL://:9093\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL\n{extra}"
    )
    .replace("$DIR", &dir.display().to_string());
    let c = Config::from_properties(parse_properties(&text)).map_err(|e| e.to_string())?;
    Ok(c.ssl_listeners["SSL"].clone())
}

fn load(dir: &Path, extra: &str) -> Result<ServerConfig, String> {
    server_config(&ssl_config(dir, extra)?)
}

#[test]
fn a_pem_bundle_with_a_pem_truststore_loads() {
    let m = material();
    load(
        m.path(),
        "ssl.keystore.type=PEM\nssl.keystore.location=$DIR/server-bundle.pem\n\
         ssl.truststore.type=PEM\nssl.truststore.location=$DIR/ca.pem\n\
         ssl.client.auth=required\n",
    )
    .expect("loads");
}

#[test]
fn inline_pem_and_an_encrypted_key_load() {
    let m = material();
    let read = |f: &str| {
        std::fs::read_to_string(m.path().join(f))
            .expect("read")
            .replace('\n', "\\n\\\n")
    };
    let extra = format!(
        "ssl.keystore.type=PEM\nssl.keystore.certificate.chain={}\nssl.keystore.key={}\n\
         ssl.key.password=keypass\nssl.truststore.certificates={}\n",
        read("server.pem"),
        read("server-enc.key"),
        read("ca.pem")
    );
    load(m.path(), &extra).expect("loads");
    let wrong = extra.replace("keypass", "nope");
    let err = load(m.path(), &wrong).expect_err("wrong password");
    assert!(err.contains("wrong ssl.key.password"), "{err}");
}

#[test]
fn a_pkcs12_keystore_loads_declared_or_detected() {
    let m = material();
    for ty in ["ssl.keystore.type=PKCS12\n", ""] {
        load(
            m.path(),
            &format!(
                "{ty}ssl.keystore.location=$DIR/server.p12\nssl.keystore.password=storepass\n"
            ),
        )
        .expect("loads");
    }
    let err = load(
        m.path(),
        "ssl.keystore.location=$DIR/server.p12\nssl.keystore.password=wrong\n",
    )
    .expect_err("wrong password");
    assert!(err.contains("wrong ssl.keystore.password"), "{err}");
}

#[test]
fn a_pkcs12_truststore_loads() {
    let m = material();
    openssl(
        m.path(),
        &[
            "pkcs12",
            "-export",
            "-nokeys",
            "-in",
            "ca.pem",
            "-out",
            "trust.p12",
            "-passout",
            "pass:trustpass",
        ],
    );
    load(
        m.path(),
        "ssl.keystore.location=$DIR/server-bundle.pem\nssl.truststore.type=PKCS12\n\
         ssl.truststore.location=$DIR/trust.p12\nssl.truststore.password=trustpass\n\
         ssl.client.auth=requested\n",
    )
    .expect("loads");
}

#[test]
fn a_jks_file_is_refused_with_how_to_convert_it() {
    let m = material();
    let jks: PathBuf = m.path().join("store.jks");
    std::fs::write(&jks, [0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2]).expect("write");
    for key in ["ssl.keystore.location", "ssl.truststore.location"] {
        let mut extra = format!("{key}=$DIR/store.jks\nssl.keystore.type=PKCS12\n");
        if key == "ssl.truststore.location" {
            extra = format!(
                "{extra}ssl.keystore.location=$DIR/server.p12\n\
                             ssl.keystore.password=storepass\nssl.client.auth=required\n"
            );
            extra = extra.replace("ssl.keystore.type=PKCS12\n", "");
        }
        let err = load(m.path(), &extra).expect_err("JKS");
        assert!(err.contains("is a JKS store"), "{err}");
        assert!(err.contains("keytool -importkeystore"), "{err}");
    }
}

#[test]
fn cipher_suites_narrow_rustls_and_an_unknown_one_is_named() {
    let m = material();
    let base = "ssl.keystore.location=$DIR/server-bundle.pem\n";
    let c = load(
        m.path(),
        &format!(
            "{base}ssl.cipher.suites=TLS_AES_256_GCM_SHA384,\
             TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
        ),
    )
    .expect("loads");
    let names: Vec<String> = c
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter_map(iana_name)
        .collect();
    assert_eq!(
        names,
        [
            "TLS_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        ]
    );
    let err = load(
        m.path(),
        &format!("{base}ssl.cipher.suites=TLS_RSA_WITH_AES_128_CBC_SHA\n"),
    )
    .expect_err("unknown suite");
    assert!(
        err.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not a cipher suite"),
        "{err}"
    );
}

#[test]
fn a_missing_file_and_a_legacy_encrypted_key_are_named() {
    let m = material();
    let err = load(m.path(), "ssl.keystore.location=$DIR/nope.pem\n").expect_err("missing");
    assert!(
        err.contains("cannot read ssl.keystore.location") && err.contains("nope.pem"),
        "{err}"
    );
    openssl(
        m.path(),
        &[
            "rsa",
            "-in",
            "server.key",
            "-aes256",
            "-traditional",
            "-out",
            "legacy.key",
            "-passout",
            "pass:x",
        ],
    );
    let legacy = [
        std::fs::read_to_string(m.path().join("server.pem")).expect("read"),
        std::fs::read_to_string(m.path().join("legacy.key")).expect("read"),
    ]
    .concat();
    std::fs::write(m.path().join("legacy.pem"), legacy).expect("write");
    let err = load(
        m.path(),
        "ssl.keystore.location=$DIR/legacy.pem\nssl.key.password=x\n",
    )
    .expect_err("legacy");
    assert!(err.contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn changed_files_reload_and_a_broken_change_keeps_the_old_material() {
    use crate::server::tls_reload::ReloadingAcceptor;
    let m = material();
    let ssl = ssl_config(
        m.path(),
        "ssl.keystore.type=PEM\nssl.keystore.location=$DIR/server-bundle.pem\n\
         ssl.truststore.type=PEM\nssl.truststore.location=$DIR/ca.pem\n\
         ssl.client.auth=requested\n",
    )
    .expect("config");
    let acceptor = ReloadingAcceptor::load("SSL", &ssl).expect("loads");
    assert_eq!(acceptor.check(), Ok(false), "nothing changed");
    let bundle = m.path().join("server-bundle.pem");
    let good = std::fs::read(&bundle).expect("read");
    let before = acceptor.acceptor();
    // A half-written key store: refused, the previous acceptor stays in use.
    std::fs::write(&bundle, &good[..good.len() / 2]).expect("write");
    assert!(acceptor.check().is_err());
    assert!(std::sync::Arc::ptr_eq(
        before.config(),
        acceptor.acceptor().config()
    ));
    // Asked again only at the next change.
    assert_eq!(acceptor.check(), Ok(false));
    // Whole again (a renewed certificate would read the same way): reloaded.
    std::fs::write(&bundle, &good).expect("write");
    assert_eq!(acceptor.check(), Ok(true));
    assert!(!std::sync::Arc::ptr_eq(
        before.config(),
        acceptor.acceptor().config()
    ));
    // The trust store is watched too.
    let ca = m.path().join("ca.pem");
    let mut trust = std::fs::read(&ca).expect("read");
    trust.extend_from_slice(b"\n");
    std::fs::write(&ca, &trust).expect("write");
    assert_eq!(acceptor.check(), Ok(true));
}

/// `<name>.pem`, `<name>.key` and the two in `<name>-bundle.pem`: a certificate for `subject`
/// with extensions `ext`, signed by the CA in `d` (`ca.pem`, `ca.key`).
fn issue(d: &Path, name: &str, subject: &str, ext: &str) {
    let (key, csr, pem, cnf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.cnf"),
    );
    std::fs::write(d.join(&cnf), ext).expect("write");
    openssl(
        d,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &cnf,
        ],
    );
    let bundle = [
        std::fs::read_to_string(d.join(&pem)).expect("read"),
        std::fs::read_to_string(d.join(&key)).expect("read"),
    ]
    .concat();
    std::fs::write(d.join(format!("{name}-bundle.pem")), bundle).expect("write");
}

#[test]
fn a_dynamic_key_store_must_load_and_keep_the_dn_and_the_subject_alt_names() {
    use crate::server::tls::certificate_names;
    use crate::server::tls_reload::ReloadingAcceptor;
    let m = material();
    let d = m.path();
    issue(
        d,
        "other-dn",
        "/CN=elsewhere",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    issue(
        d,
        "fewer-sans",
        "/CN=localhost",
        "subjectAltName=DNS:localhost\n",
    );
    issue(
        d,
        "more-sans",
        "/CN=LOCALHOST",
        "subjectAltName=DNS:localhost,DNS:b1,IP:127.0.0.1\n",
    );
    let with = |extra: &str| ssl_config(d, extra).expect("config");
    let acceptor = ReloadingAcceptor::load(
        "SSL",
        &with("ssl.keystore.location=$DIR/server-bundle.pem\n"),
    )
    .expect("loads");
    let pem = std::fs::read(d.join("server.pem")).expect("read");
    let der = rustls_pemfile_der(&pem);
    let (dn, sans) = certificate_names(&der).expect("names");
    assert_eq!(dn, "CN=localhost");
    assert_eq!(
        sans.into_iter().collect::<Vec<_>>(),
        ["DNS:localhost", "IP:127.0.0.1"]
    );

    // The same certificate from a PKCS#12 store; the DN in another case with more names.
    let p12 = with(
        "ssl.keystore.type=PKCS12\nssl.keystore.location=$DIR/server.p12\n\
         ssl.keystore.password=storepass\n",
    );
    assert_eq!(acceptor.validate(&p12), Ok(()));
    assert_eq!(
        acceptor.validate(&with("ssl.keystore.location=$DIR/more-sans-bundle.pem\n")),
        Ok(())
    );
    // Another DN, fewer names, or nothing to load: refused in Kafka's words.
    let err = acceptor
        .validate(&with("ssl.keystore.location=$DIR/other-dn-bundle.pem\n"))
        .expect_err("another DN");
    assert!(
        err.starts_with("Validation of dynamic config update of SSLFactory failed: ")
            && err.contains("Keystore DistinguishedName does not match")
            && err.contains("CN=elsewhere"),
        "{err}"
    );
    let err = acceptor
        .validate(&with("ssl.keystore.location=$DIR/fewer-sans-bundle.pem\n"))
        .expect_err("fewer names");
    assert!(
        err.contains("Keystore SubjectAltNames do not match"),
        "{err}"
    );
    let err = acceptor
        .validate(&with("ssl.keystore.location=$DIR/missing.pem\n"))
        .expect_err("no file");
    assert!(err.contains("missing.pem"), "{err}");
    // Unless the listener allows the change.
    assert_eq!(
        acceptor.validate(&with(
            "ssl.keystore.location=$DIR/other-dn-bundle.pem\nssl.allow.dn.changes=true\n"
        )),
        Ok(())
    );

    // Reconfigured: new handshakes get the new acceptor; the same settings change nothing.
    let before = acceptor.acceptor();
    assert_eq!(acceptor.reconfigure(&p12), Ok(true));
    assert!(!std::sync::Arc::ptr_eq(
        before.config(),
        acceptor.acceptor().config()
    ));
    assert_eq!(acceptor.reconfigure(&p12), Ok(false));
    assert_eq!(acceptor.validate(&p12), Ok(()));
    // A broken one leaves the material in use.
    let in_use = acceptor.acceptor();
    assert!(acceptor
        .reconfigure(&with("ssl.keystore.location=$DIR/missing.pem\n"))
        .is_err());
    assert!(std::sync::Arc::ptr_eq(
        in_use.config(),
        acceptor.acceptor().config()
    ));
    // The same settings with their file changed in place are checked too.
    let bundle = with("ssl.keystore.location=$DIR/server-bundle.pem\n");
    assert_eq!(acceptor.reconfigure(&bundle), Ok(true));
    assert_eq!(acceptor.validate(&bundle), Ok(()));
    std::fs::copy(d.join("other-dn-bundle.pem"), d.join("server-bundle.pem")).expect("copy");
    let err = acceptor.validate(&bundle).expect_err("another DN in place");
    assert!(err.contains("DistinguishedName"), "{err}");
}

/// The DER of the first certificate of PEM text.
fn rustls_pemfile_der(pem: &[u8]) -> Vec<u8> {
    gregor_client::stores::pem_certs(pem, "test")
        .expect("pem")
        .remove(0)
        .as_ref()
        .to_vec()
}
