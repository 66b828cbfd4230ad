//! The storage CLI (`random-uuid`, `format`) and start-up refusals, run as real processes.

use std::process::Command;

use crate::support::gregor_bin;

fn gregor(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(gregor_bin())
        .args(args)
        .output()
        .expect("run gregor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn write_config(dir: &std::path::Path, logs: &std::path::Path) -> String {
    let path = dir.join("server.properties");
    std::fs::write(
        &path,
        format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:19093\n\
             listeners=PLAINTEXT://127.0.0.1:0\nlog.dirs={}\nsome.future.kafka.key=1\n",
            logs.display()
        ),
    )
    .expect("write config");
    path.display().to_string()
}

#[test]
fn random_uuid_prints_a_kafka_form_id() {
    let (ok, out, _) = gregor(&["storage", "random-uuid"]);
    assert!(ok);
    let id = out.trim();
    assert_eq!(id.len(), 22);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
}

#[test]
fn format_is_idempotent_with_ignore_formatted_and_refuses_another_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let cfg = write_config(tmp.path(), &logs);
    let (_, id, _) = gregor(&["storage", "random-uuid"]);
    let id = id.trim().to_string();
    let (ok, _, err) = gregor(&["storage", "format", "-t", &id, "-c", &cfg]);
    assert!(ok, "{err}");
    let meta = std::fs::read_to_string(logs.join("meta.properties")).expect("meta.properties");
    assert!(meta.contains(&format!("cluster.id={id}")));
    assert!(
        meta.contains("node.id=1") && meta.contains("directory.id=") && meta.contains("version=1")
    );
    let (ok, _, err) = gregor(&["storage", "format", "-t", &id, "-c", &cfg]);
    assert!(!ok && err.contains("already formatted"), "{err}");
    let (ok, _, err) = gregor(&[
        "storage",
        "format",
        "-t",
        &id,
        "-c",
        &cfg,
        "--ignore-formatted",
    ]);
    assert!(ok, "{err}");
    let (_, other, _) = gregor(&["storage", "random-uuid"]);
    let other = other.trim().to_string();
    let (ok, _, err) = gregor(&[
        "storage",
        "format",
        "-t",
        &other,
        "-c",
        &cfg,
        "--ignore-formatted",
    ]);
    assert!(!ok && err.contains(&id) && err.contains(&other), "{err}");
}

/// An id starting with '-' (one in 64 random base64url ids; the operator's and random-uuid
/// re-roll them, as Kafka's, but a user's may be one) is the flag's value, not a flag, as the
/// operator passes it: `--cluster-id ID`.
#[test]
fn a_cluster_id_starting_with_a_hyphen_is_taken_as_the_value() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let cfg = write_config(tmp.path(), &logs);
    let id = "-IgWCu11Sa6cLGnAUQQHbw";
    let (ok, _, err) = gregor(&["storage", "format", "--cluster-id", id, "--config", &cfg]);
    assert!(ok, "{err}");
    let meta = std::fs::read_to_string(logs.join("meta.properties")).expect("meta.properties");
    assert!(meta.contains(&format!("cluster.id={id}")), "{meta}");
}

/// In a pod the operator names the container's termination message file: a refused format
/// writes its error there too, so the pod's status names both cluster ids.
#[test]
fn a_refused_format_writes_its_error_to_the_termination_log_when_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let cfg = write_config(tmp.path(), &logs);
    let (_, id, _) = gregor(&["storage", "random-uuid"]);
    let id = id.trim().to_string();
    let (ok, _, err) = gregor(&["storage", "format", "-t", &id, "-c", &cfg]);
    assert!(ok, "{err}");
    let termination_log = tmp.path().join("termination-log");
    let format = |cluster_id: &str| {
        Command::new(gregor_bin())
            .args(["storage", "format", "-t", cluster_id, "-c", &cfg])
            .arg("--ignore-formatted")
            .env(
                gregor_client::termination::TERMINATION_LOG_ENV,
                &termination_log,
            )
            .output()
            .expect("run gregor")
    };
    assert!(format(&id).status.success());
    assert!(!termination_log.exists(), "a success writes no message");
    let other = "AAAAAAAAAAAAAAAAAAAAAA";
    let out = format(other);
    assert!(!out.status.success());
    let message = std::fs::read_to_string(&termination_log).expect("the termination message");
    assert!(
        message.contains(&id) && message.contains(other),
        "{message}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.starts_with("error: ") && stderr.trim_end().ends_with(message.trim()),
        "the message is the error on stderr, without the log lines before it: {stderr}"
    );
}

#[test]
fn server_start_refuses_an_unformatted_dir_and_malformed_values() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let cfg = write_config(tmp.path(), &logs);
    let (ok, _, err) = gregor(&["server-start", &cfg]);
    assert!(!ok && err.contains("not formatted"), "{err}");
    let (ok, _, err) = gregor(&["server-start", &cfg, "--override", "num.partitions=many"]);
    assert!(!ok && err.contains("num.partitions"), "{err}");
    let (ok, _, err) = gregor(&["storage", "format", "-t", "short", "-c", &cfg]);
    assert!(!ok && err.contains("not a valid id"), "{err}");
}

#[test]
fn server_start_refuses_role_layouts_kafka_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let cfg = write_config(tmp.path(), &logs);
    let (_, id, _) = gregor(&["storage", "random-uuid"]);
    let (ok, _, err) = gregor(&["storage", "format", "-t", id.trim(), "-c", &cfg]);
    assert!(ok, "{err}");
    let voters = "controller.quorum.voters=2@127.0.0.1:19094,3@127.0.0.1:19095";
    let (ok, _, err) = gregor(&["server-start", &cfg, "--override", voters]);
    assert!(
        !ok && err.contains("the node id 1 must be included in the set of voters"),
        "{err}"
    );
    let (ok, _, err) = gregor(&["server-start", &cfg, "--override", "process.roles=broker"]);
    assert!(
        !ok && err.contains("the node id 1 must not be included in the set of voters"),
        "{err}"
    );
}

#[test]
fn format_writes_meta_properties_for_every_role() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, id, _) = gregor(&["storage", "random-uuid"]);
    let id = id.trim().to_string();
    let common =
        "controller.quorum.voters=1@127.0.0.1:19093\ncontroller.listener.names=CONTROLLER\n";
    let roles = [
        (
            "controller",
            "node.id=1\nprocess.roles=controller\nlisteners=CONTROLLER://127.0.0.1:19093\n",
        ),
        (
            "broker",
            "node.id=2\nprocess.roles=broker\nlisteners=PLAINTEXT://127.0.0.1:0\n",
        ),
    ];
    for (role, props) in roles {
        let logs = tmp.path().join(format!("{role}-logs"));
        let metadata = tmp.path().join(format!("{role}-metadata"));
        let cfg = tmp.path().join(format!("{role}.properties"));
        std::fs::write(
            &cfg,
            format!(
                "{props}{common}log.dirs={}\nmetadata.log.dir={}\n",
                logs.display(),
                metadata.display()
            ),
        )
        .expect("write config");
        let (ok, _, err) = gregor(&[
            "storage",
            "format",
            "-t",
            &id,
            "-c",
            &cfg.display().to_string(),
        ]);
        assert!(ok, "{role}: {err}");
        for dir in [&logs, &metadata] {
            let meta = std::fs::read_to_string(dir.join("meta.properties"))
                .unwrap_or_else(|e| panic!("{role}: {}: {e}", dir.display()));
            assert!(meta.contains(&format!("cluster.id={id}")), "{role}: {meta}");
        }
    }
}
