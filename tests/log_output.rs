//! No terminal colour escapes unless stderr is a terminal: written to a
//! file, journald or ECS's awslogs driver, they would stay in every line as
//! garbage. The real binary, its stderr a file (`serve`) or a pipe
//! (`analyze` of files and of S3, whose listing is logged), with each
//! `--log.format`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::exporter::binary;
use common::{Moto, free_port, http_agent, http_get, wait_until};

const FORMATS: [&str; 2] = ["text", "json"];

/// `text` holds log lines, none with an escape sequence; JSON lines parse.
fn assert_plain(what: &str, format: &str, text: &str) {
    assert!(!text.trim().is_empty(), "{what}: nothing on stderr");
    assert!(
        !text.contains('\u{1b}'),
        "{what}, --log.format {format}: escape sequences on stderr that is not a terminal:\n{text:?}"
    );
    if format == "json" {
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok(), "{what}: not JSON: {line}");
        }
    }
}

#[test]
fn serve_logs_to_a_file_carry_no_escapes() {
    for format in FORMATS {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "[files]\npaths = [\"examples/sample-flows.log\"]\n",
        )
        .expect("write the config");
        let log = dir.path().join("stderr.log");
        let port = free_port();
        let mut command: Command = binary();
        command
            .args(["--log.format", format, "--log.level", "debug", "serve"])
            .arg("--config")
            .arg(&config)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"));
        let mut child = command.spawn().expect("start serve");
        let ready = format!("http://127.0.0.1:{port}/ready");
        wait_until(Duration::from_secs(30), "serve to be ready", || {
            matches!(http_get(&ready), Ok((200, _))).then_some(())
        });
        child.kill().expect("stop serve");
        child.wait().expect("reap serve");
        let text = std::fs::read_to_string(&log).expect("read the log");
        assert!(text.contains("Listening"), "{text}");
        assert!(text.contains("ready"), "{text}");
        assert_plain("serve", format, &text);
    }
}

#[test]
fn analyze_warnings_and_logs_on_a_pipe_carry_no_escapes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("flows.log");
    // A field name it does not know (a warning naming the nearest one),
    // a malformed record and a good one; large enough input is not needed:
    // the progress bar is drawn only on a terminal anyway.
    std::fs::write(
        &input,
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status tcp-flagz\n\
         2 123456789010 eni-0a1b2c3d 10.0.0.1 10.0.0.2 40000 443 6 3 180 1700000000 1700000001 ACCEPT OK 2\n\
         2 123456789010 eni-0a1b2c3d not-an-address\n",
    )
    .expect("write the input");
    for format in FORMATS {
        let output = binary()
            .args(["--log.format", format, "--log.level", "debug", "analyze"])
            .args(["--output", "json"])
            .arg(&input)
            .output()
            .expect("run analyze");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("tcp-flagz"), "the warning:\n{stderr}");
        assert_plain("analyze", format, &stderr);
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains('\u{1b}'),
            "escapes in the report"
        );
    }
}

#[test]
fn analyze_of_s3_logs_on_a_pipe_carry_no_escapes() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    // moto takes unsigned REST calls: a bucket and one flow log object.
    let key = "AWSLogs/123456789010/vpcflowlogs/us-east-1/2023/11/14/flows.log";
    let record = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n\
                  2 123456789010 eni-0a1b2c3d 10.0.0.1 10.0.0.2 40000 443 6 3 180 1700000000 1700000001 ACCEPT OK\n";
    for (url, body) in [
        (format!("{endpoint}/flows"), ""),
        (format!("{endpoint}/flows/{key}"), record),
    ] {
        let response = http_agent().put(&url).send(body).expect("put to moto");
        assert_eq!(response.status().as_u16(), 200, "{url}");
    }
    for format in FORMATS {
        let output = binary()
            .args(["--log.format", format, "--log.level", "debug", "analyze"])
            .args(["--output", "json", "--region", "us-east-1"])
            .args(["--endpoint-url", &endpoint, "s3://flows/AWSLogs/"])
            .output()
            .expect("run analyze");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            stderr.contains("Listed"),
            "the listing is logged:\n{stderr}"
        );
        assert_plain("analyze s3://", format, &stderr);
    }
}
