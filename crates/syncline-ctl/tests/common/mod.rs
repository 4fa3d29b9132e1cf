//! Running the `syncline-ctl` binary against the test broker, shared by the tests that
//! drive it directly (no pipeline around it).

#![allow(dead_code)]

use std::process::{Command, Output};

use syncline_testkit::kafka_brokers;

/// Run `syncline-ctl --brokers <test broker> <args>` to completion.
pub fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
        .arg("--brokers")
        .arg(kafka_brokers())
        .args(args)
        .output()
        .expect("run syncline-ctl")
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
