//! Tests that tie the operator-facing files to the clap definitions:
//!
//! * the configuration reference in `docs/operations.md` is rendered from the flags of the
//!   service commands and must be current (`TAREFAS_UPDATE_DOCS=1 cargo test -p tarefas-cli
//!   --bin tarefas reference` rewrites it);
//! * every command, flag and environment variable the Kubernetes manifests in
//!   `deploy/kubernetes` pass is one the binary accepts, and the worker's grace period
//!   outlasts its drain timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{Arg, Command, CommandFactory, Parser};
use serde_yaml::Value;

use crate::Cli;

/// The commands whose flags the reference documents (the services and the migration).
const DOCUMENTED: &[&str] = &[
    "worker",
    "scheduler",
    "sync",
    "migrate",
    "dlq list",
    "dlq replay",
    "prune",
];
const BEGIN: &str = "<!-- BEGIN GENERATED: configuration reference (do not edit; see crates/tarefas-cli/src/reference.rs) -->";
const END: &str = "<!-- END GENERATED: configuration reference -->";

/// Variables the binary reads that are not clap flags (the OpenTelemetry SDK's and the log
/// filter), accepted anywhere.
fn other_env(name: &str) -> bool {
    name == "RUST_LOG" || name == "TAREFAS_TRACE_FILTER" || name.starts_with("OTEL_")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn built() -> Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

fn find<'a>(root: &'a Command, path: &str) -> &'a Command {
    path.split_whitespace().fold(root, |cmd, name| {
        cmd.find_subcommand(name)
            .unwrap_or_else(|| panic!("no command `{path}`"))
    })
}

fn documented_args(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter(|a| !a.is_hide_set())
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn arg_row(arg: &Arg) -> String {
    let flag = match (arg.get_long(), arg.get_short()) {
        (Some(l), _) => format!("`--{l}`"),
        (None, Some(s)) => format!("`-{s}`"),
        (None, None) => format!("`<{}>`", arg.get_id()),
    };
    let env = arg
        .get_env()
        .map(|e| format!("`{}`", e.to_string_lossy()))
        .unwrap_or_default();
    let default: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let default = if default.is_empty() {
        String::new()
    } else {
        format!("`{}`", default.join(","))
    };
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    let mut help = help.trim().to_owned();
    if !help.is_empty() && !help.ends_with('.') {
        help.push('.');
    }
    if !values.is_empty() && arg.get_action().takes_values() {
        help.push_str(&format!(" One of {}.", values.join(", ")));
    }
    format!(
        "| {flag} | {env} | {} | {} |",
        cell(&default),
        cell(help.trim())
    )
}

/// The generated reference (between the markers).
fn render() -> String {
    let root = built();
    let mut out = String::new();
    out.push_str(
        "Every flag can also be set with its environment variable; a flag given on the \
         command line wins.\n\n",
    );
    out.push_str(
        "### Every command\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n",
    );
    for arg in documented_args(&root) {
        out.push_str(&arg_row(arg));
        out.push('\n');
    }
    for path in DOCUMENTED {
        let cmd = find(&root, path);
        out.push_str(&format!(
            "\n### `tarefas {path}`\n\n{}\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n",
            cmd.get_about().map(|a| a.to_string()).unwrap_or_default().replace('\n', " ")
        ));
        for arg in documented_args(cmd).filter(|a| !a.is_global_set()) {
            out.push_str(&arg_row(arg));
            out.push('\n');
        }
    }
    out
}

#[test]
fn reference_in_operations_md_is_current() {
    let path = repo_root().join("docs/operations.md");
    let doc = std::fs::read_to_string(&path).expect("docs/operations.md");
    let (start, end) = match (doc.find(BEGIN), doc.find(END)) {
        (Some(s), Some(e)) if s < e => (s + BEGIN.len(), e),
        _ => panic!("docs/operations.md lacks the generated-reference markers"),
    };
    let fresh = format!("\n{}", render());
    if doc[start..end] != fresh {
        if std::env::var("TAREFAS_UPDATE_DOCS").is_ok() {
            let updated = format!("{}{fresh}{}", &doc[..start], &doc[end..]);
            std::fs::write(&path, updated).expect("write docs/operations.md");
        } else {
            panic!(
                "docs/operations.md's configuration reference is stale: run \
                 `TAREFAS_UPDATE_DOCS=1 cargo test -p tarefas-cli --bin tarefas reference`"
            );
        }
    }
}

// ----- manifests ----------------------------------------------------------------------------

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read deploy dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            <Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One container the manifests run.
struct Container {
    file: String,
    args: Vec<String>,
    env: Vec<String>,
    env_from: Vec<String>,
    grace: Option<i64>,
}

struct Manifests {
    containers: Vec<Container>,
    /// ConfigMap or Secret name -> (key, value), from resources and generators.
    sources: BTreeMap<String, Vec<(String, String)>>,
    scaled_queues: Vec<String>,
}

fn load_manifests() -> Manifests {
    let mut files = Vec::new();
    yaml_files(&repo_root().join("deploy/kubernetes"), &mut files);
    files.sort();
    assert!(files.len() >= 8, "too few manifests found: {files:?}");
    let mut m = Manifests {
        containers: Vec::new(),
        sources: BTreeMap::new(),
        scaled_queues: Vec::new(),
    };
    for path in &files {
        let file = path.display().to_string();
        for doc in documents(path) {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = get(&doc, &["metadata", "name"])
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let pod = match kind {
                "Deployment" | "Job" => get(&doc, &["spec", "template", "spec"]),
                "CronJob" => get(&doc, &["spec", "jobTemplate", "spec", "template", "spec"]),
                _ => None,
            };
            if let Some(pod) = pod {
                let grace = pod
                    .get("terminationGracePeriodSeconds")
                    .and_then(Value::as_i64);
                for c in pod
                    .get("containers")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    let env = c
                        .get("env")
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_owned))
                        .collect();
                    let env_from = c
                        .get("envFrom")
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|e| {
                            get(e, &["configMapRef", "name"])
                                .or(get(e, &["secretRef", "name"]))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .collect();
                    m.containers.push(Container {
                        file: file.clone(),
                        args: strings(c.get("args")),
                        env,
                        env_from,
                        grace,
                    });
                }
            }
            match kind {
                "ConfigMap" | "Secret" => {
                    let entries = m.sources.entry(name).or_default();
                    for field in ["data", "stringData"] {
                        if let Some(map) = doc.get(field).and_then(Value::as_mapping) {
                            for (k, v) in map {
                                let value = match v {
                                    Value::String(s) => s.clone(),
                                    other => serde_yaml::to_string(other).unwrap_or_default(),
                                };
                                entries.push((k.as_str().unwrap_or_default().to_owned(), value));
                            }
                        }
                    }
                }
                "Kustomization" => {
                    for generator in ["configMapGenerator", "secretGenerator"] {
                        for g in doc
                            .get(generator)
                            .and_then(Value::as_sequence)
                            .into_iter()
                            .flatten()
                        {
                            let gname = g.get("name").and_then(Value::as_str).unwrap_or_default();
                            let entries = m.sources.entry(gname.to_owned()).or_default();
                            for lit in strings(g.get("literals")) {
                                let (k, v) = lit.split_once('=').unwrap_or((&lit, ""));
                                entries.push((k.to_owned(), v.to_owned()));
                            }
                        }
                    }
                }
                "ScaledObject" => {
                    for t in get(&doc, &["spec", "triggers"])
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(q) = get(t, &["metadata", "queueName"]).and_then(Value::as_str)
                        {
                            m.scaled_queues.push(q.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    m
}

/// The subcommand path of `args` (leading words) and the environment variables it reads.
fn accepted_env(root: &Command, args: &[String]) -> BTreeSet<String> {
    let mut cmd = root;
    let mut env: BTreeSet<String> = BTreeSet::new();
    let mut collect = |c: &Command| {
        for a in c.get_arguments() {
            if let Some(e) = a.get_env() {
                env.insert(e.to_string_lossy().into_owned());
            }
        }
    };
    collect(cmd);
    for word in args.iter().take_while(|a| !a.starts_with('-')) {
        cmd = cmd
            .find_subcommand(word)
            .unwrap_or_else(|| panic!("the manifests run `tarefas {word}`, which does not exist"));
        collect(cmd);
    }
    env
}

#[test]
fn manifests_pass_only_flags_and_variables_the_binary_accepts() {
    let root = built();
    let m = load_manifests();
    assert!(
        m.containers.len() >= 5,
        "expected the worker, scheduler (Deployment and CronJob), sync and migrate containers"
    );
    let mut consumers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for c in &m.containers {
        // The arguments must parse as the binary parses them.
        let argv = std::iter::once("tarefas".to_owned()).chain(c.args.iter().cloned());
        if let Err(e) = Cli::try_parse_from(argv) {
            problems.push(format!("{}: args {:?} rejected: {e}", c.file, c.args));
        }
        let accepted = accepted_env(&root, &c.args);
        for name in &c.env {
            if !accepted.contains(name) && !other_env(name) {
                problems.push(format!(
                    "{}: `tarefas {}` does not read the variable {name}",
                    c.file,
                    c.args.join(" ")
                ));
            }
        }
        for source in &c.env_from {
            consumers
                .entry(source.as_str())
                .or_default()
                .extend(accepted.iter().cloned());
        }
    }
    for (source, accepted) in &consumers {
        let Some(entries) = m.sources.get(*source) else {
            // Created out of band in production (tarefas-secrets): its example is checked
            // under its own name below.
            continue;
        };
        for (key, _) in entries {
            let huggy_token = source.contains("secret") && !key.starts_with("TAREFAS_");
            if !accepted.contains(key) && !other_env(key) && !huggy_token {
                problems.push(format!(
                    "{source}: {key} is read by none of the commands that load it"
                ));
            }
        }
    }
    assert!(consumers.contains_key("tarefas-config") && consumers.contains_key("tarefas-secrets"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn seconds(s: &str) -> i64 {
    let d = crate::services::parse_duration(s).unwrap_or_else(|e| panic!("{e}"));
    d.as_secs() as i64
}

#[test]
fn worker_grace_period_outlasts_the_drain_and_keda_watches_the_real_queues() {
    let m = load_manifests();
    let config: BTreeMap<_, _> = m.sources["tarefas-config"].iter().cloned().collect();
    let drain = seconds(&config["TAREFAS_DRAIN_TIMEOUT"]);
    let worker = m
        .containers
        .iter()
        .find(|c| c.args.first().map(String::as_str) == Some("worker"))
        .expect("a worker container");
    let grace = worker
        .grace
        .expect("the worker sets terminationGracePeriodSeconds");
    assert!(
        grace >= drain + 5,
        "terminationGracePeriodSeconds {grace} must exceed TAREFAS_DRAIN_TIMEOUT {drain}s by 5s"
    );
    let prefix = &config["TAREFAS_QUEUE_PREFIX"];
    let names = tarefas_broker::Names::new(prefix.clone()).expect("valid prefix");
    let real: BTreeSet<String> = [
        names.queue(tarefas_broker::Source::Batches),
        names.queue(tarefas_broker::Source::Executions),
    ]
    .into();
    let scaled: BTreeSet<String> = m.scaled_queues.iter().cloned().collect();
    assert_eq!(scaled, real, "the ScaledObject must watch the work queues");
}
