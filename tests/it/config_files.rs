//! Every shipped config validates, and each kind of mistake is reported at its line and column
//! with a message naming the field; all problems in a file are reported together.
//!
//! Longer than most files on purpose: it is the catalogue of config mistakes, one short test
//! for each.

use std::path::Path;
use switchyard::config;

#[test]
fn every_toml_file_in_conf_parses_and_validates() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&conf).expect("conf/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            config::load(&path).unwrap_or_else(|err| panic!("{err}"));
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected conf/switchyard.toml and conf/demo.toml"
    );
}

#[test]
fn built_in_demo_config_is_the_shipped_file() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/demo.toml"))
            .unwrap();
    assert_eq!(switchyard::demo::CONFIG, shipped);
    // The demo shows probes at work: every pool has them.
    let demo = config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/demo.toml")).unwrap();
    assert!(demo.pools.iter().all(|pool| pool.health_check.is_some()));
}

use crate::support::config::VALID_TAIL;

const LISTENER: &str = "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n";

use crate::support::config::{assert_problem, problems};

#[test]
fn toml_syntax_error_is_located() {
    assert_problem(
        &format!("{LISTENER}[timeouts\nconnect = \"1s\"\n"),
        "4:10:",
        "",
    );
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    assert_problem(
        &format!("{LISTENER}colour = \"blue\"\n{VALID_TAIL}"),
        "4:1:",
        "unknown field `colour`",
    );
    assert_problem(
        &format!("{LISTENER}{VALID_TAIL}weigth = 3\n"),
        "14:1:",
        "unknown field `weigth`",
    );
}

#[test]
fn wrong_type_is_an_error_naming_the_expectation() {
    assert_problem(
        &format!("{LISTENER}{VALID_TAIL}weight = \"heavy\"\n"),
        "14:10:",
        "pools.backends.weight: invalid type: string \"heavy\", expected i64",
    );
}

#[test]
fn bad_listener_address_is_located() {
    assert_problem(
        &format!("[[listeners]]\nname = \"l\"\nbind = \"localhost\"\n{VALID_TAIL}"),
        "3:8:",
        "listeners[0].bind",
    );
}

#[test]
fn missing_listener_is_reported() {
    assert_problem(VALID_TAIL, "1:1:", "listeners");
}

#[test]
fn zero_and_oversized_weights_are_rejected() {
    assert_problem(
        &format!("{LISTENER}{VALID_TAIL}weight = 0\n"),
        "14:10:",
        "pools[0].backends[0].weight: must be between 1 and 256, got 0",
    );
    assert_problem(
        &format!("{LISTENER}{VALID_TAIL}weight = 1000\n"),
        "14:10:",
        "got 1000",
    );
}

#[test]
fn bad_backend_address_is_rejected() {
    let text = format!("{LISTENER}{VALID_TAIL}").replace("127.0.0.1:9000", "127.0.0.1");
    assert_problem(&text, "13:11:", "pools[0].backends[0].address");
}

#[test]
fn bad_duration_is_rejected() {
    assert_problem(
        &format!("{LISTENER}[timeouts]\nconnect = \"soon\"\n{VALID_TAIL}"),
        "5:11:",
        "timeouts.connect",
    );
    assert_problem(
        &format!("{LISTENER}[timeouts]\nidle = \"0s\"\n{VALID_TAIL}"),
        "5:8:",
        "timeouts.idle: must be greater than zero",
    );
}

#[test]
fn route_to_missing_pool_is_rejected() {
    let text = format!("{LISTENER}{VALID_TAIL}").replace("pool = \"p\"", "pool = \"nope\"");
    assert_problem(&text, "7:8:", "routes[0].pool: no pool named \"nope\"");
}

#[test]
fn bad_route_host_and_prefix_are_rejected() {
    let text = format!("{LISTENER}{VALID_TAIL}").replace(
        "pool = \"p\"\n",
        "pool = \"p\"\nhost = \"bad host\"\npath_prefix = \"api\"\n",
    );
    assert_problem(&text, "8:8:", "routes[0].host");
    assert_problem(&text, "9:15:", "routes[0].path_prefix");
}

#[test]
fn empty_pool_is_rejected() {
    let text = format!("{LISTENER}{VALID_TAIL}\n[[pools]]\nname = \"empty\"\n");
    assert_problem(
        &text,
        "15:1:",
        "pools[1].backends: pool \"empty\" has no backends",
    );
}

#[test]
fn unknown_algorithm_is_rejected() {
    let text = format!("{LISTENER}{VALID_TAIL}")
        .replace("name = \"p\"\n", "name = \"p\"\nalgorithm = \"random\"\n");
    assert_problem(&text, "11:13:", "unknown variant `random`");
}

#[test]
fn duplicate_names_are_rejected() {
    let dup_backend = format!(
        "{LISTENER}{VALID_TAIL}[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9001\"\n"
    );
    assert_problem(
        &dup_backend,
        "15:8:",
        "pools[0].backends.name: duplicate backend name \"b\"",
    );
    let dup_pool = format!(
        "{LISTENER}{VALID_TAIL}\n[[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9001\"\n"
    );
    assert_problem(&dup_pool, "16:8:", "pools.name: duplicate pool name \"p\"");
    let dup_listener = format!("{LISTENER}{LISTENER}{VALID_TAIL}");
    assert_problem(
        &dup_listener,
        "5:8:",
        "listeners.name: duplicate listener name \"l\"",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!("{LISTENER}{VALID_TAIL}weight = 0\n")
        .replace("pool = \"p\"", "pool = \"nope\"")
        .replace("bind = \"127.0.0.1:0\"", "bind = \"nowhere\"");
    let found = problems(&text);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("3:8:")
            && found[1].starts_with("7:8:")
            && found[2].starts_with("14:10:"),
        "{found:#?}"
    );
}

#[test]
fn printed_defaults_are_the_defaults_and_name_every_option() {
    // Parsed, the defaults document is the same config as a minimal one leaving every option
    // unset: each value it prints is the default in force.
    let minimal = r#"
[[listeners]]
name = "main"
bind = "0.0.0.0:8080"
[[routes]]
name = "default"
pool = "main"
[[pools]]
name = "main"
[[pools.backends]]
name = "backend-1"
address = "127.0.0.1:9000"
"#;
    let printed = switchyard::config::parse(switchyard::config::DEFAULTS, "defaults.toml")
        .unwrap_or_else(|err| panic!("{err}"));
    let unset = switchyard::config::parse(minimal, "defaults.toml").unwrap();
    assert_eq!(format!("{printed:#?}"), format!("{unset:#?}"));

    // And it names every option the full example config uses (set, or commented when off).
    let keys = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .map(|line| line.trim_start_matches(['#', ' ']))
            .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.trim().to_owned()))
            .filter(|key| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect()
    };
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/switchyard.toml"))
            .unwrap();
    let missing: Vec<_> = keys(&example)
        .difference(&keys(switchyard::config::DEFAULTS))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "not in the printed defaults: {missing:?}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .output()
            .expect("run switchyard");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for (shell, marker) in [
        ("bash", "_switchyard()"),
        ("zsh", "#compdef switchyard"),
        ("fish", "complete -c switchyard"),
    ] {
        let script = run(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("check"), "{shell} completes subcommands");
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH switchyard 1"), "{man}");
    assert!(man.contains("log\\-format"), "{man}");
    for section in [
        ".SH COMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH SIGNALS",
        ".SH FILES",
        ".SH EXAMPLES",
    ] {
        assert!(man.contains(section), "no {section} in {man}");
    }
    // One page: nothing points to per-command pages that are never installed.
    assert!(!man.contains("switchyard\\-check(1)"), "{man}");
    let defaults = run(&["config", "--defaults"]);
    assert_eq!(defaults, switchyard::config::DEFAULTS);
}

#[test]
fn every_type_error_is_reported_each_with_its_place() {
    let text = "[[listeners]]\nname = \"a\"\nbind = 5\n[timeouts]\nconnect = 3\n\
                [[routes]]\nname = \"r\"\npool = \"p\"\n\
                [[pools]]\nname = \"p\"\nretries = \"x\"\n\
                [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n";
    let found = problems(text);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("3:8: listeners.bind: invalid type"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("5:11: timeouts.connect: invalid type"),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("11:11: pools.retries: invalid type"),
        "{found:#?}"
    );
}

#[test]
fn what_used_to_fail_only_at_start_is_caught_by_check() {
    let pool = "[[routes]]\nname = \"r\"\npool = \"p\"\n[[pools]]\nname = \"p\"\n\
                [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n";
    // Two listeners that cannot both be bound: a wildcard address takes the port everywhere.
    let listeners = "[[listeners]]\nname = \"a\"\nbind = \"0.0.0.0:8080\"\n\
                     [[listeners]]\nname = \"b\"\nbind = \"127.0.0.1:8080\"\n";
    assert_problem(
        &format!("{listeners}{pool}"),
        "6:8",
        "overlaps 0.0.0.0:8080",
    );
    let admin = "[admin]\nbind = \"127.0.0.1:9901\"\n\
                 [[listeners]]\nname = \"a\"\nbind = \"127.0.0.1:9901\"\n";
    assert_problem(
        &format!("{admin}{pool}"),
        "2:8",
        "admin.bind: 127.0.0.1:9901 overlaps listener",
    );
    // A probe Host header with a control character: every probe would fail.
    let probe = format!("{LISTENER}{pool}[pools.health_check]\nhost = \"web\\u0001.internal\"\n");
    assert_problem(&probe, "13:8", "is not a host name");
    // A backend host no resolver takes.
    let bad_host = format!(
        "{LISTENER}{}",
        pool.replace("127.0.0.1:1", "-web.internal:80")
    );
    assert_problem(&bad_host, "11:11", "is not host:port");
}

#[test]
fn check_diff_prints_what_a_reload_would_change() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-diff");
    std::fs::create_dir_all(&dir).unwrap();
    let base = format!(
        "{LISTENER}[[routes]]\nname = \"r\"\npool = \"p\"\n[[pools]]\nname = \"p\"\nretries = 2\n\
         [[pools.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n"
    );
    let old = dir.join("old.toml");
    let new = dir.join("new.toml");
    std::fs::write(&old, &base).unwrap();
    std::fs::write(
        &new,
        format!(
            "[access_log]\nformat = \"combined\"\n{}[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n",
            base.replace("retries = 2", "retries = 1")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--diff"])
        .args([&old, &new])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let changes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changes["backends_added"], serde_json::json!(["p/b"]));
    assert_eq!(
        changes["settings_changed"],
        serde_json::json!(["pools.p.retries"])
    );
    assert_eq!(changes["not_applied"][0]["setting"], "access_log");
}

#[test]
fn keys_of_another_probe_type_are_located() {
    let with_check = |check: &str| format!("{LISTENER}{VALID_TAIL}[pools.health_check]\n{check}");
    let tcp = with_check("type = \"tcp\"\npath = \"/up\"\n");
    assert_problem(
        &tcp,
        "16:8",
        "pools[0].health_check.path: does not apply to this probe type",
    );
    let http = with_check("service = \"api\"\n");
    assert_problem(
        &http,
        "15:11",
        "pools[0].health_check.service: does not apply to this probe type",
    );
    let grpc = with_check("type = \"grpc\"\nmethod = \"GET\"\nhost = \"api.internal\"\n");
    assert!(
        !problems(&grpc)
            .iter()
            .any(|p| p.contains("health_check.host")),
        "gRPC probes take a host"
    );
    assert_problem(
        &grpc,
        "16:10",
        "pools[0].health_check.method: does not apply to this probe type",
    );
}

/// Twelve mistakes in one file are twelve lines: every type error of every table entry, and
/// alongside them every other problem of what could be read.
#[test]
fn every_mistake_in_a_file_is_reported() {
    let text = "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:8080\"\nredirect_to_https = \"yes\"\n\
                [timeouts]\nconnect = 5\nresponse_header = \"2\"\nidle = \"1 sec\"\n\
                [[routes]]\nname = \"r\"\npool = \"web\"\npath_prefix = \"nope\"\n\
                [[pools]]\nname = \"web\"\nretries = \"two\"\n\
                [[pools.backends]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\nweight = \"heavy\"\n\
                [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9002\"\nweight = 0\n\
                [pools.health_check]\ninterval = 5\nunhealthy_threshold = \"2\"\n\
                [[pools]]\nname = \"api\"\nalgorithm = \"fastest\"\n\
                [[pools.backends]]\nname = \"x\"\naddress = \"not an address\"\n";
    let found = problems(text);
    let expected = [
        "4:21: listeners.redirect_to_https: invalid type",
        "6:11: timeouts.connect: invalid type",
        "7:19: timeouts.response_header: \"2\" is not a duration",
        "8:8: timeouts.idle: \"1 sec\" is not a duration",
        "12:15: routes[0].path_prefix:",
        "15:11: pools.retries: invalid type",
        "19:10: pools.backends.weight: invalid type",
        "23:10: pools[0].backends[1].weight: must be between 1 and 256",
        "25:12: pools.health_check.interval: invalid type",
        "26:23: pools.health_check.unhealthy_threshold: invalid type",
        "29:13: pools.algorithm: unknown variant `fastest`",
        "32:11: pools[1].backends[0].address:",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (found, expected) in found.iter().zip(expected) {
        assert!(
            found.starts_with(expected),
            "{found} does not start with {expected}"
        );
    }
}

#[test]
fn a_duplicate_key_names_the_key_its_table_and_the_first_definition() {
    let text = "[[listeners]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\nname = \"b\"\n";
    assert_eq!(
        problems(text),
        ["4:1: duplicate key `name` in [listeners], first defined at line 2"]
    );
    let text = "[timeouts]\nconnect = \"1s\"\n[timeouts]\nidle = \"1s\"\n";
    let found = problems(text);
    assert!(
        found[0].ends_with("duplicate table [timeouts], first defined at line 1"),
        "{found:?}"
    );
}

/// A network-reachable admin API without a token is refused by `check` as by `run`: exit 1
/// and the same message.
#[test]
fn check_and_run_refuse_an_open_admin_api_alike() {
    let dir = std::env::temp_dir().join(format!("switchyard-admin-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("open.toml");
    std::fs::write(
        &path,
        format!("{LISTENER}{VALID_TAIL}[admin]\nbind = \"0.0.0.0:0\"\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .arg(&path)
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .output()
            .expect("run switchyard")
    };
    let (check, start) = (run(&["check", "--config"]), run(&["run", "--config"]));
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert_eq!(start.status.code(), Some(1), "{start:?}");
    let message = String::from_utf8_lossy(&check.stderr);
    assert!(
        message.contains("is not a loopback address and no admin token is set"),
        "{message}"
    );
    assert_eq!(check.stderr, start.stderr);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_takes_the_file_as_a_positional_argument_too() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/demo.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(&demo)
        .output()
        .expect("run switchyard check");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{}: ok", demo.display())),
        "{text}"
    );
}

/// The key names of every option `config --defaults` prints (set or commented out).
fn default_keys() -> std::collections::BTreeSet<String> {
    switchyard::config::DEFAULTS
        .lines()
        .map(|line| line.trim_start_matches(['#', ' ']))
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.trim().to_owned()))
        .filter(|key| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

/// The reference book's pages, with their paths.
fn docs_pages() -> Vec<(std::path::PathBuf, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src");
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    pages.sort();
    assert!(pages.len() >= 10, "docs/src has {} pages", pages.len());
    pages
}

#[test]
fn every_option_of_the_defaults_is_documented_in_the_book() {
    let docs: String = docs_pages().into_iter().map(|(_, text)| text).collect();
    let undocumented: Vec<_> = default_keys()
        .into_iter()
        .filter(|key| {
            ![format!("`{key}`"), format!("`{key} ="), format!(".{key}`")]
                .iter()
                .any(|spelling| docs.contains(spelling.as_str()))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "options without a word in docs/src: {undocumented:?}"
    );
}

#[test]
fn every_metric_is_listed_in_the_observability_page() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/observability.md"
    ))
    .unwrap();
    let unlisted: Vec<&str> = switchyard::metrics::TABLE
        .iter()
        .map(|&(name, _, _)| name)
        .filter(|name| !page.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        unlisted.is_empty(),
        "metrics missing from observability.md: {unlisted:?}"
    );
}

#[test]
fn relative_links_of_the_readme_and_the_book_lead_to_files_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = docs_pages();
    pages.push((
        root.join("README.md"),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    ));
    let mut broken = Vec::new();
    for (path, text) in &pages {
        for link in text.split("](").skip(1) {
            let Some(target) = link.split(')').next() else {
                continue;
            };
            let file = target.split('#').next().unwrap_or("");
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            if !path.parent().unwrap().join(file).exists() {
                broken.push(format!("{}: {target}", path.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

const POOL_P: &str =
    "[[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n";

#[test]
fn route_mistakes_are_reported_at_their_place() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"a\"\npath_regex = \"/x(\"\npool = \"p\"\n\
         [[routes]]\nname = \"b\"\npath = \"/x\"\npath_prefix = \"/y\"\npool = \"p\"\n\
         [[routes]]\nname = \"c\"\nredirect = {{ status = 301 }}\n\
         [[routes]]\nname = \"d\"\npool = \"p\"\nrespond = {{ status = 200 }}\n\
         [[routes]]\nname = \"e\"\nmethods = [\"get\"]\npool = \"p\"\n\
         [[routes]]\nname = \"f\"\npool = \"p\"\nheaders = [{{ name = \"x\", exact = \"1\", present = true }}]\n\
         [[routes]]\nname = \"g\"\npath = \"/g\"\nredirect = {{ prefix = \"/h\" }}\n\
         [[routes]]\nname = \"h\"\npool = \"p\"\nheaders = [{{ name = \"x y\", present = true }}]\n\
         {POOL_P}"
    );
    let found = problems(&text);
    let expect = [
        "6:14: routes[0].path_regex: not a regular expression",
        "10:8: routes[1]: give one of path_prefix, path and path_regex",
        "15:12: routes[2].redirect: no target",
        "16:1: routes[3]: give one of pool, redirect and respond",
        "22:12: routes[4].methods: \"get\" is not a method name in upper case",
        "27:12: routes[5].headers[0]: give one of exact, prefix, regex and present",
        "31:12: routes[6].redirect.prefix: only a path_prefix route can replace its prefix",
        "35:21: routes[7].headers[0].name: \"x y\" is not a header name",
    ];
    for expected in expect {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected} missing from {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "one problem each: {found:#?}");
}

#[test]
fn a_route_that_can_never_match_is_a_warning_that_check_prints() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"all\"\npath_prefix = \"/api\"\npool = \"p\"\n\
         [[routes]]\nname = \"shadowed\"\npath_prefix = \"/api/v1\"\npool = \"p\"\nmethods = [\"GET\"]\n\
         [[routes]]\nname = \"deeper\"\npath_prefix = \"/api/v1/x\"\npool = \"p\"\n\
         [[routes]]\nname = \"posts\"\npath_prefix = \"/api\"\nmethods = [\"POST\"]\npool = \"p\"\n\
         [[routes]]\nname = \"gets\"\npath_prefix = \"/api/z\"\nmethods = [\"GET\"]\nheaders = [{{ name = \"x\", present = true }}]\npool = \"p\"\n\
         {POOL_P}"
    );
    // A longer prefix is more specific: `/api` never hides `/api/v1`. Nothing here is dead.
    let config = config::parse(&text, "x.toml").unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    // Equal prefixes: the one with more conditions comes first, so a plain route after it is
    // alive, but a route whose conditions another, earlier one already covers is not.
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"wide\"\npath_prefix = \"/api\"\npool = \"p\"\n\
         [[routes]]\nname = \"dead\"\npath_regex = \"/api/.*\"\nmethods = [\"GET\"]\npool = \"p\"\n\
         [[routes]]\nname = \"first\"\npath = \"/x\"\nmethods = [\"GET\", \"POST\"]\npool = \"p\"\n\
         [[routes]]\nname = \"hidden\"\npath = \"/x\"\nmethods = [\"GET\"]\nquery = [{{ name = \"q\", present = true }}]\nheaders = [{{ name = \"h\", present = true }}]\npool = \"p\"\n\
         {POOL_P}"
    );
    let config = config::parse(&text, "x.toml").unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    // Same path, as many conditions, the wider first in the file: the narrower is dead.
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"reads-and-writes\"\npath = \"/x\"\nmethods = [\"GET\", \"POST\"]\npool = \"p\"\n\
         [[routes]]\nname = \"reads\"\npath = \"/x\"\nmethods = [\"GET\"]\npool = \"p\"\n\
         [[routes]]\nname = \"tagged\"\nheaders = [{{ name = \"x-tag\", prefix = \"a\" }}]\npool = \"p\"\n\
         [[routes]]\nname = \"tagged-ab\"\nheaders = [{{ name = \"x-tag\", exact = \"ab\" }}]\npool = \"p\"\n\
         {POOL_P}"
    );
    let config = config::parse(&text, "x.toml").unwrap();
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    assert!(
        config.warnings[0].starts_with("x.toml:9:1: routes[1]: route \"reads\" can never match: route \"reads-and-writes\" comes first"),
        "{:?}",
        config.warnings
    );
    assert!(config.warnings[1].contains("routes[3]: route \"tagged-ab\" can never match"));
    let path = std::env::temp_dir().join(format!("shadow-{}.toml", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run switchyard check");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let location = path.display().to_string();
    assert!(
        stderr.contains(&format!("warning: {location}:")) && stderr.contains("routes["),
        "{stderr}"
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn rewrite_and_header_rule_mistakes_are_reported_at_their_place() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"a\"\npath = \"/a\"\nstrip_prefix = true\npool = \"p\"\n\
         [[routes]]\nname = \"b\"\npool = \"p\"\nrequest_headers = {{ set = {{ connection = \"close\" }} }}\n\
         [[routes]]\nname = \"c\"\npool = \"p\"\nrequest_headers = {{ set = {{ x-a = \"{{nope}}\" }} }}\n\
         [[routes]]\nname = \"d\"\npool = \"p\"\nrequest_headers = {{ add = {{ x-b = \"{{route\" }} }}\n\
         [[routes]]\nname = \"e\"\npath = \"/e\"\nrespond = {{ body = \"x\" }}\nadd_prefix = \"/v2\"\n\
         [[routes]]\nname = \"f\"\npool = \"p\"\nrewrite = {{ regex = \"(\", replace = \"/x\" }}\n\
         [[routes]]\nname = \"g\"\npool = \"p\"\nhost_rewrite = \"a b\"\n\
         [[pools]]\nname = \"p\"\nresponse_headers = {{ remove = [\"transfer-encoding\"] }}\n\
         [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n"
    );
    let found = problems(&text);
    let expect = [
        "routes[0].strip_prefix: only a path_prefix route has a prefix to strip",
        "routes[1].request_headers.set.connection: \"connection\" belongs to the connection or the message framing",
        "routes[2].request_headers.set.x-a: unknown variable {nope}; known: client_ip, request_id, host, scheme, route, backend",
        "routes[3].request_headers.add.x-b: '{' without '}'",
        "routes[4].add_prefix: applies to a route that forwards to a pool",
        "routes[5].rewrite.regex: not a regular expression",
        "routes[6].host_rewrite: \"a b\" is not host or host:port",
        "pools[0].response_headers.remove: \"transfer-encoding\" belongs to the connection",
    ];
    for expected in expect {
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected} missing from {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn hsts_preload_needs_a_year_and_subdomains() {
    let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/localhost.pem");
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/localhost-key.pem");
    let text = format!(
        "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners.tls.certificates]]\ncert = {cert:?}\nkey = {key:?}\n\
         [listeners.tls.hsts]\nmax_age = \"30d\"\npreload = true\n{VALID_TAIL}"
    );
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p.contains("listeners[0].tls.hsts.preload: the preload list needs")),
        "{found:?}"
    );
}

#[test]
fn cors_mistakes_are_reported_at_their_place() {
    let text = format!(
        "{LISTENER}[[routes]]\nname = \"a\"\npool = \"p\"\ncors = {{ allow_origins = [\"*\"], allow_credentials = true }}\n\
         [[routes]]\nname = \"b\"\npath = \"/b\"\npool = \"p\"\ncors = {{ allow_origins = [\"app.test\"] }}\n\
         [[routes]]\nname = \"c\"\npath = \"/c\"\nrespond = {{ body = \"x\" }}\ncors = {{ allow_origins = [\"*\"] }}\n\
         {POOL_P}"
    );
    let found = problems(&text);
    let expect = [
        "routes[0].cors: allow_credentials = true with \"*\" is refused by browsers",
        "routes[1].cors.allow_origins: \"app.test\" is not an origin",
        "routes[2].cors: applies to a route that forwards to a pool",
    ];
    for expected in expect {
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected} missing from {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn address_rule_mistakes_are_reported_at_their_place() {
    let text = "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
                trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n\
                [[routes]]\nname = \"a\"\npool = \"p\"\n\
                ip_rules = [\"allow 192.0.2.0/24\", \"permit all\", \"deny 300.1.1.1\", \"deny\"]\n\
                [[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n";
    assert_eq!(
        problems(text),
        [
            "4:34: listeners[0].trusted_proxies: \"10.0.0.1/8\" is not an address or a network in CIDR form (\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\")",
            "8:35: routes[0].ip_rules: \"permit all\" is not \"allow <network>\" or \"deny <network>\" (a network in CIDR form, one address, or all)",
            "8:49: routes[0].ip_rules: \"deny 300.1.1.1\" is not \"allow <network>\" or \"deny <network>\" (a network in CIDR form, one address, or all)",
            "8:67: routes[0].ip_rules: \"deny\" is not \"allow <network>\" or \"deny <network>\" (a network in CIDR form, one address, or all)",
        ]
    );
}

#[test]
fn trusting_every_address_is_a_warning() {
    let text = "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
                trusted_proxies = [\"10.0.0.0/8\", \"::/0\"]\n\
                [[routes]]\nname = \"a\"\npool = \"p\"\n\
                [[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n";
    let config = config::parse(text, "x.toml").unwrap();
    assert_eq!(
        config.warnings,
        [
            "x.toml:4:34: listeners[0].trusted_proxies: \"::/0\" trusts every address: any client can then choose the address it is known by"
        ]
    );
    assert_eq!(config.listeners[0].trusted_proxies.len(), 2);
}

#[test]
fn a_proxy_protocol_mode_that_is_neither_required_nor_optional_is_refused() {
    let text = "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
                proxy_protocol = \"v2\"\nproxy_protocol_timeout = \"soon\"\n\
                [[routes]]\nname = \"a\"\npool = \"p\"\n\
                [[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n";
    let found = problems(text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with(
            "4:18: listeners[0].proxy_protocol: \"v2\" is not \"required\" or \"optional\""
        ),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("5:26: listeners[0].proxy_protocol_timeout"),
        "{found:#?}"
    );
}

#[test]
fn hashing_settings_are_checked_where_they_are_written() {
    let pool = |extra: &str| {
        format!("{LISTENER}{VALID_TAIL}").replace(
            "[[pools.backends]]",
            &format!("{extra}\n[[pools.backends]]"),
        )
    };
    // Line 11 is the first line of the additions.
    assert_problem(
        &pool("[pools.hash]\nkey = \"path\""),
        "11:1:",
        "pools[0].hash: only for algorithm = \"hash\" (this pool balances by weighted_round_robin)",
    );
    let hashing = |table: &str| pool(&format!("algorithm = \"hash\"\n[pools.hash]\n{table}"));
    assert_problem(
        &hashing("key = \"host\""),
        "13:7:",
        "pools[0].hash.key: \"host\" is not client_ip, path",
    );
    assert_problem(
        &hashing("key = \"path_regex:/users/[^/]+\""),
        "13:7:",
        "has no capture group; the first one is the key",
    );
    assert_problem(
        &hashing("key = \"path_regex:/users/([^/]+\""),
        "13:7:",
        "pools[0].hash.key: not a regular expression",
    );
    assert_problem(
        &hashing("balance_factor = 80"),
        "13:18:",
        "pools[0].hash.balance_factor: 80 would refuse a backend its own share",
    );
    assert_problem(
        &pool("latency_decay = \"5s\""),
        "11:17:",
        "pools[0].latency_decay: only for algorithm = \"least_latency\"",
    );
    assert_problem(
        &pool("algorithm = \"least_latency\"\nlatency_decay = \"1h\""),
        "12:17:",
        "pools[0].latency_decay: 3600s is outside 100ms..10m",
    );
    let valid = hashing("key = \"path_regex:/users/([^/]+)/.*\"\nbalance_factor = 125");
    let config = config::parse(&valid, "x.toml").unwrap_or_else(|err| panic!("{err}"));
    let hash = config.pools[0].hash.as_ref().expect("hash settings");
    assert_eq!(hash.balance_factor.map(|f| f.get()), Some(125));
    // A hashing pool without the table hashes by the client's address.
    let plain = pool("algorithm = \"hash\"");
    let config = config::parse(&plain, "x.toml").unwrap();
    assert_eq!(
        config.pools[0].hash.as_ref().map(|h| h.key.clone()),
        Some(switchyard::config::HashKey::ClientIp {
            v4_prefix: 32,
            v6_prefix: 64
        })
    );
}

#[test]
fn check_names_what_shapes_a_hashing_or_least_latency_pool() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-algorithms");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("algorithms.toml");
    std::fs::write(
        &path,
        format!(
            "{LISTENER}[[routes]]\nname = \"r\"\npool = \"h\"\n\
             [[pools]]\nname = \"h\"\nalgorithm = \"hash\"\n\
             hash = {{ key = \"cookie:session\", table = \"ring\", balance_factor = 150 }}\n\
             [[pools.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\
             [[pools]]\nname = \"l\"\nalgorithm = \"least_latency\"\nlatency_decay = \"2s\"\n\
             [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(
        summary.contains("hash by cookie:session (ring, bound 150 %)"),
        "{summary}"
    );
    assert!(summary.contains("least_latency (decay 2s)"), "{summary}");
}

#[test]
fn a_sticky_secret_must_be_there_and_long_enough() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sticky-secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short.key");
    std::fs::write(&short, "too short").unwrap();
    let with = |table: &str| {
        format!("{LISTENER}{VALID_TAIL}").replace(
            "[[pools.backends]]",
            &format!("[pools.sticky]\n{table}\n[[pools.backends]]"),
        )
    };
    assert_problem(
        &with(&format!("secret_file = \"{}\"", short.display())),
        "12:15:",
        "pools[0].sticky.secret_file: the secret must be at least 32 bytes",
    );
    assert_problem(
        &with("secret_file = \"/nonexistent/sticky.key\""),
        "12:15:",
        "pools[0].sticky.secret_file: No such file",
    );
    assert_problem(
        &with("cookie = \"a b\""),
        "11:1:",
        "pools[0].sticky: needs secret_file, or fleet_secret = true",
    );
    assert_problem(
        &with("fleet_secret = true"),
        "12:16:",
        "pools[0].sticky.fleet_secret: the key is kept in the fleet's Redis: configure [fleet]",
    );
    let good = dir.join("good.key");
    std::fs::write(&good, "0123456789abcdef0123456789abcdef").unwrap();
    assert_problem(
        &with(&format!(
            "secret_file = \"{}\"\ncookie = \"a b\"",
            good.display()
        )),
        "13:10:",
        "pools[0].sticky.cookie: \"a b\" is not a cookie name",
    );
}
