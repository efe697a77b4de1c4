//! End-to-end: compose.yaml on the real Docker engine. Needs Docker and the
//! local images, so these are `#[ignore]`d in a plain `cargo test`;
//! `scripts/test` installs and builds everything, then runs them one at a
//! time (they publish the stack's fixed ports).

mod common;

use std::process::Command;

use common::stack::*;

fn assert_up(stack: &Stack) {
    let up = stack.up();
    assert_eq!(up.code, 0, "up failed: {up:?}\ngarage-init log:\n{}", stack.logs("garage-init"));
    if let Some(image) = garage_image() {
        assert_eq!(stack.inspect("garage")["Config"]["Image"], image.as_str(), "GARAGE_IMAGE not used");
    }
}

/// The HTTP status the stack's admin API answers `GetClusterStatus` with, for `bearer`.
fn admin_status(bearer: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:3903/v2/GetClusterStatus"])
        .args(["-H", &format!("Authorization: Bearer {bearer}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn up_wait_returns_a_ready_stack_that_buildkit_can_use() {
    let stack = Stack::new("up");
    assert_up(&stack);

    let garage = stack.inspect("garage");
    assert_eq!(garage["State"]["Health"]["Status"], "healthy", "{}", garage["State"]);
    let init = stack.inspect("garage-init");
    assert_eq!(init["State"]["Status"], "exited");
    assert_eq!(init["State"]["ExitCode"], 0);
    let log = stack.logs("garage-init");
    let seen = outcomes(&log);
    assert_eq!(seen.len(), 6, "{log}");
    for (resource, outcome) in seen {
        let want = if resource == "s3 check" { "passed" } else { "created" };
        assert_eq!(outcome, want, "{resource}: {log}");
    }
    // The stack's default lifecycle rules, read back by boto3: blobs expire
    // after 30 days, manifests after 28, incomplete uploads are aborted after 1.
    let mut rules: Vec<(String, String)> = lifecycle_rules()
        .iter()
        .map(|r| {
            let days = r["Expiration"]["Days"].to_string()
                + "/"
                + &r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].to_string();
            (r["ID"].as_str().unwrap_or("").to_string(), days)
        })
        .collect();
    rules.sort();
    let want = [
        ("garage-init-abort-incomplete-uploads", "null/1"),
        ("garage-init-expire-blobs", "30/null"),
        ("garage-init-expire-manifests", "28/null"),
    ];
    assert_eq!(rules, want.map(|(a, b)| (a.to_string(), b.to_string())), "{log}");

    // As BuildKit's S3 cache would: boto3 on the host, path-style, region garage.
    let (code, result) = boto3("roundtrip", "e2e/up");
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["matches"], true, "{result}");
    assert_eq!(result["deleted"], true, "{result}");
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn garage_init_runs_locked_down_and_no_container_shows_a_secret() {
    let stack = Stack::new("hardening");
    assert_up(&stack);

    let init = stack.inspect("garage-init");
    let host = &init["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true, "{host}");
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]), "{host}");
    assert!(
        host["SecurityOpt"].as_array().into_iter().flatten().any(|o| o == "no-new-privileges:true"),
        "{}",
        host["SecurityOpt"]
    );
    assert_eq!(init["Config"]["User"], "65532:65532");

    // The credentials are files under /run/secrets: neither the environment
    // nor anything else `docker inspect` shows holds their values.
    let secrets = [("admin token", dev_secret("admin-token")), ("RPC secret", dev_secret("rpc-secret"))];
    for service in ["garage", "garage-init", "registry"] {
        let inspect = stack.inspect(service);
        // Null when neither the image nor compose sets a variable.
        let env = inspect["Config"]["Env"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = env.iter().filter_map(|e| e.as_str()?.split('=').next()).collect();
        for (what, value) in &secrets {
            assert!(
                !inspect.to_string().contains(value.as_str()),
                "docker inspect {service} shows the {what}; env: {names:?}"
            );
        }
        for name in ["GARAGE_ADMIN_TOKEN", "GARAGE_RPC_SECRET", "GARAGE_INIT_ADMIN_TOKEN"] {
            assert!(!names.contains(&name), "{service} has {name} in its environment");
        }
    }
    let env = |service: &str| stack.inspect(service)["Config"]["Env"].to_string();
    assert!(env("garage-init").contains("\"GARAGE_INIT_ADMIN_TOKEN_FILE=/run/secrets/admin-token\""));
    assert!(env("garage").contains("\"GARAGE_ADMIN_TOKEN_FILE=/run/secrets/admin-token\""));
    assert!(env("garage").contains("\"GARAGE_RPC_SECRET_FILE=/run/secrets/rpc-secret\""));
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn an_admin_token_file_of_your_own_replaces_the_development_one_for_both() {
    let token = format!("own-token-{}", common::random_hex(16));
    let stack = Stack::new("owntoken").with_own_admin_token(&token);
    assert_up(&stack);
    assert_eq!(admin_status(&token), "200", "Garage should take the token of the file");
    assert_eq!(admin_status(&dev_secret("admin-token")), "403", "Garage should no longer take the development token");
    assert!(!stack.inspect("garage-init").to_string().contains(&token), "docker inspect shows the token");
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn garage_admin_token_set_in_the_environment_still_overrides_the_file_for_both() {
    let token = format!("env-token-{}", common::random_hex(16));
    let stack = Stack::new("envtoken").with_env("GARAGE_ADMIN_TOKEN", &token);
    assert_up(&stack);
    assert_eq!(admin_status(&token), "200", "Garage should take the token of GARAGE_ADMIN_TOKEN");
    assert_eq!(admin_status(&dev_secret("admin-token")), "403", "Garage should no longer take the file's token");
    // garage-init converged with it too (assert_up), and each reads the value, not the file.
    let env = |service: &str| stack.inspect(service)["Config"]["Env"].to_string();
    assert!(env("garage").contains("\"GARAGE_ADMIN_TOKEN_FILE_UNUSED=/run/secrets/admin-token\""), "{}", env("garage"));
    assert!(env("garage-init").contains("GARAGE_INIT_ADMIN_TOKEN_FILE_UNUSED="), "{}", env("garage-init"));
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn registry_takes_a_push_and_gives_it_back() {
    let stack = Stack::new("registry");
    assert_up(&stack);

    let tag = format!("localhost:5050/e2e/{}:1", stack.project);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), stack.project.as_bytes()).unwrap();
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C {} -c hello.txt | docker import - {tag}", dir.path().display()))
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    docker(&["push", &tag]);
    docker(&["image", "rm", &tag]);
    docker(&["pull", &tag]);
    docker(&["image", "rm", &tag]);

    let catalog = get_json("http://127.0.0.1:5050/v2/_catalog");
    let repo = format!("e2e/{}", stack.project);
    assert!(catalog["repositories"].as_array().unwrap().iter().any(|r| r == &repo), "{catalog}");
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn garage_init_run_again_changes_nothing() {
    let stack = Stack::new("rerun");
    assert_up(&stack);
    let run = stack.compose(&["run", "--rm", "--no-deps", "garage-init"]);
    assert_eq!(run.code, 0, "{run:?}");
    let outcomes = outcomes(&run.stdout);
    assert_eq!(outcomes.len(), 6, "{run:?}");
    for (resource, outcome) in outcomes {
        let want = if resource == "s3 check" { "passed" } else { "unchanged" };
        assert_eq!(outcome, want, "{resource}: {run:?}");
    }
    assert!(run.stdout.contains("nothing changed (") && run.stdout.contains(" admin requests, 0 changes)"), "{run:?}");
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn up_wait_covers_garage_init_while_the_registry_does_not_wait_for_garage() {
    let stack = Stack::new("order");
    assert_up(&stack);
    let started = |service: &str| stack.inspect(service)["State"]["StartedAt"].as_str().unwrap().to_string();
    let finished = stack.inspect("garage-init")["State"]["FinishedAt"].as_str().unwrap().to_string();
    // RFC 3339 timestamps of the same zone and precision compare as strings.
    assert!(started("registry") < finished, "the registry waited for garage-init (finished {finished})");
    // The UI is what waits for garage-init, so that `up --wait` does too.
    assert!(started("registry-ui") > finished, "registry-ui started before garage-init finished at {finished}");
    let depends = |service: &str| stack.inspect(service)["Config"]["Labels"]["com.docker.compose.depends_on"].clone();
    assert!(!depends("registry").to_string().contains("garage"), "registry depends on {}", depends("registry"));
    assert!(
        depends("registry-ui").as_str().unwrap_or("").contains("garage-init:service_completed_successfully"),
        "registry-ui's dependency label: {}",
        depends("registry-ui")
    );
    // Log rotation on the long-running services.
    for service in ["garage", "registry", "registry-ui"] {
        let log = &stack.inspect(service)["HostConfig"]["LogConfig"];
        assert_eq!(log["Config"]["max-size"], "10m", "{service}: {log}");
    }
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn down_keeps_the_data_and_down_v_starts_afresh() {
    let stack = Stack::new("restart");
    assert_up(&stack);
    let (code, put) = boto3("put", "e2e/survives-down");
    assert_eq!(code, 0, "{put}");

    let down = stack.down(false);
    assert_eq!(down.code, 0, "{down:?}");
    assert_up(&stack);
    let log = stack.logs("garage-init");
    for (resource, outcome) in outcomes(&log) {
        let want = if resource == "s3 check" { "passed" } else { "unchanged" };
        assert_eq!(outcome, want, "after down/up, {resource}: {log}");
    }
    let (code, got) = boto3("get", "e2e/survives-down");
    assert_eq!((code, &got["matches"]), (0, &serde_json::Value::Bool(true)), "{got}");

    let down = stack.down(true);
    assert_eq!(down.code, 0, "{down:?}");
    assert_up(&stack);
    let log = stack.logs("garage-init");
    assert_eq!(outcomes(&log).iter().filter(|(_, o)| o == "created").count(), 5, "after down -v: {log}");
    let (code, gone) = boto3("get", "e2e/survives-down");
    assert_eq!(code, 1, "the object should be gone after down -v: {gone}");
    assert!(gone["error"].as_str().unwrap_or("").contains("NoSuchKey"), "{gone}");
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn every_published_port_binds_to_loopback_only() {
    // The file itself, registry-ui included.
    let stack = Stack::new("ports");
    let config = stack.compose(&["config", "--format", "json"]);
    assert_eq!(config.code, 0, "{config:?}");
    let config: serde_json::Value = serde_json::from_str(&config.stdout).unwrap();
    let mut published = 0;
    for (name, service) in config["services"].as_object().unwrap() {
        for port in service["ports"].as_array().into_iter().flatten() {
            assert_eq!(port["host_ip"], "127.0.0.1", "{name}: {port}");
            published += 1;
        }
    }
    assert_eq!(published, 5, "garage 3, registry 1, registry-ui 1");

    // And what Docker actually bound.
    assert_up(&stack);
    for service in ["garage", "registry"] {
        let ports = stack.inspect(service)["NetworkSettings"]["Ports"].clone();
        for (port, bindings) in ports.as_object().unwrap() {
            for b in bindings.as_array().into_iter().flatten() {
                assert_eq!(b["HostIp"], "127.0.0.1", "{service} {port}: {b}");
            }
        }
    }
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn wrong_admin_token_fails_up_with_garage_inits_auth_code() {
    let stack = Stack::new("badtoken").with_wrong_admin_token();
    let up = stack.up();
    assert_ne!(up.code, 0, "{up:?}");
    let said = up.stdout.clone() + &up.stderr;
    assert!(said.contains("garage-init") && said.contains("exit 4"), "{up:?}");
    assert_eq!(stack.inspect("garage-init")["State"]["ExitCode"], 4);
    let log = stack.logs("garage-init");
    assert!(log.contains("Error: Garage's admin API at http://garage:3903 rejected the admin token"), "{log}");
    assert!(!log.contains("not-the-admin-token") && !log.contains("garage-init-dev-admin-token"), "{log}");
    // A failed initialization leaves the registry serving.
    assert_eq!(stack.inspect("registry")["State"]["Status"], "running");
    assert_eq!(get_json("http://127.0.0.1:5050/v2/"), serde_json::json!({}));
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn three_node_variant_comes_up_with_its_documented_command() {
    let stack = Stack::new("cluster").with_repo_file("compose.cluster.yaml");
    assert_up(&stack);
    let init = stack.inspect("garage-init");
    assert_eq!(init["State"]["ExitCode"], 0);
    let log = stack.logs("garage-init");
    let layout = log.lines().find(|l| l.starts_with("layout ")).unwrap_or_default();
    assert!(layout.starts_with("layout    created    version 1:"), "{log}");
    for zone in ["dc1", "dc2", "dc3"] {
        assert!(layout.contains(&format!("zone {zone}, capacity 10.0 GB")), "{zone}: {log}");
    }
    for node in ["garage", "garage-2", "garage-3"] {
        assert_eq!(stack.inspect(node)["State"]["Health"]["Status"], "healthy", "{node}");
    }
    let (code, result) = boto3("roundtrip", "e2e/cluster");
    assert_eq!((code, &result["matches"]), (0, &serde_json::Value::Bool(true)), "{result}");

    let again = stack.compose(&["run", "--rm", "--no-deps", "garage-init"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing changed"), "{again:?}");
}

#[test]
#[ignore = "needs Docker and the local images: run scripts/test"]
fn an_engine_before_25_refuses_compose_yaml_alone_with_a_message_naming_start_interval() {
    if !engine_before_25() {
        eprintln!("skipped: this engine supports healthcheck start_interval (Engine 25 or later)");
        return;
    }
    // What a user on such an engine sees without the override docs/stack.md names.
    let project = format!("gi-e2e-oldengine-{}", common::random_hex(3));
    let compose = |args: &[&str]| {
        let out = Command::new("docker")
            .current_dir(repo_root())
            .args(["compose", "-p", &project, "--env-file", "/dev/null", "-f", "compose.yaml"])
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, said) = compose(&["up", "-d", "--pull", "never", "--no-deps", "garage"]);
    let _ = compose(&["down", "-v", "--timeout", "1"]);
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("start_interval") && said.contains("v25"), "{said}");
}
