//! A Garage S3 server (single node or a 3-node cluster) on loopback, for tests.
//!
//! Start-up: write one config per node (free loopback ports, a shared RPC secret, LMDB metadata
//! in a temporary directory), start `garage server` for each, connect the nodes, assign every
//! node a role in one layout and apply it, import a known access key, create a bucket and allow
//! the key on it, then wait until an S3 request succeeds. Dropping the value kills every node
//! and removes the directory.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rbk_chunkstore::provider::{
    Provider, RetryPolicy, RetryingProvider, S3Location, S3Options, S3Provider,
};

pub const GARAGE_VERSION: &str = "2.5.0";

/// Region the test servers answer for; clients must sign with it.
const REGION: &str = "garage";

struct Node {
    dir: PathBuf,
    config: PathBuf,
    s3_port: u16,
    child: Option<Child>,
}

pub struct Garage {
    binary: PathBuf,
    nodes: Vec<Node>,
    bucket: String,
    key_id: String,
    secret: String,
    _dir: tempfile::TempDir,
}

/// The `garage` binary: `$RBK_GARAGE`, else `garage` on PATH, else the copy `.ci/run` builds
/// into `<target dir>/tools/garage-<version>/bin`.
///
/// # Panics
/// When none is found, with instructions, so an S3 test never passes silently.
pub fn garage_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RBK_GARAGE") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("garage");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let cached = target
        .join("tools")
        .join(format!("garage-{GARAGE_VERSION}"))
        .join("bin/garage");
    if cached.is_file() {
        return cached;
    }
    panic!(
        "this test needs Garage (an S3-compatible server) and none was found: run `bash .ci/run` \
         once (it builds Garage into {}), or `cargo install garage --locked --version \
         {GARAGE_VERSION}`, or set RBK_GARAGE=/path/to/garage",
        cached.display()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn random_hex(bytes: usize) -> String {
    hex::encode((0..bytes).map(|_| rand::random::<u8>()).collect::<Vec<_>>())
}

impl Garage {
    /// One node, replication factor 1.
    pub fn start() -> Garage {
        Self::start_nodes(1)
    }

    /// `n` nodes on loopback, replication factor `n` (3 for a real quorum: writes and reads
    /// keep working with one node down).
    pub fn start_cluster(n: usize) -> Garage {
        Self::start_nodes(n)
    }

    fn start_nodes(n: usize) -> Garage {
        let binary = garage_binary();
        let dir = tempfile::tempdir().expect("temp dir for garage");
        let rpc_secret = random_hex(32);
        let mut nodes = Vec::new();
        for i in 0..n {
            let node_dir = dir.path().join(format!("node{i}"));
            fs::create_dir_all(&node_dir).expect("node dir");
            let (rpc_port, s3_port) = (free_port(), free_port());
            let config = node_dir.join("garage.toml");
            fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = {n}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"
"#,
                    meta = node_dir.join("meta").display(),
                    data = node_dir.join("data").display(),
                ),
            )
            .expect("garage config");
            nodes.push(Node {
                dir: node_dir,
                config,
                s3_port,
                child: None,
            });
        }
        let mut garage = Garage {
            binary,
            nodes,
            bucket: "rbk-test".into(),
            key_id: format!("GK{}", random_hex(12)),
            secret: random_hex(32),
            _dir: dir,
        };
        for i in 0..n {
            garage.spawn(i);
        }
        garage.configure();
        garage
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = fs::File::create(node.dir.join("server.log")).expect("garage log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        node.child = Some(child);
    }

    /// Runs a `garage` CLI command against node `i`; retries while the node is starting.
    fn cli(&self, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(&self.binary)
                .arg("-c")
                .arg(&self.nodes[i].config)
                .args(args)
                .env("RUST_LOG", "error")
                .output()
                .expect("garage cli runs");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if Instant::now() > deadline {
                let log =
                    fs::read_to_string(self.nodes[i].dir.join("server.log")).unwrap_or_default();
                panic!(
                    "`garage {}` failed: {}\n{}\nserver log:\n{log}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn configure(&self) {
        let ids: Vec<String> = (0..self.nodes.len())
            .map(|i| {
                let full = self.cli(i, &["node", "id", "-q"]);
                full.trim().to_string()
            })
            .collect();
        for full in &ids[1..] {
            self.cli(0, &["node", "connect", full]);
        }
        for (i, full) in ids.iter().enumerate() {
            let hex_id = full.split('@').next().expect("node id");
            let zone = format!("dc{i}");
            self.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", hex_id]);
        }
        self.cli(0, &["layout", "apply", "--version", "1"]);
        self.cli(
            0,
            &[
                "key",
                "import",
                "--yes",
                "-n",
                "rbk",
                &self.key_id,
                &self.secret,
            ],
        );
        self.cli(0, &["bucket", "create", &self.bucket]);
        self.cli(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &self.bucket,
                "--key",
                &self.key_id,
            ],
        );
        self.wait_for_s3();
    }

    /// Waits until an S3 request through the first node is answered (the layout and the
    /// bucket reach every node shortly after the CLI returns).
    fn wait_for_s3(&self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let probe = self.s3_provider("", S3Options::default());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rt.block_on(probe.exists("probe")) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("garage never answered S3: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.nodes[0].s3_port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Access key id and secret of the key allowed on the bucket.
    pub fn credentials(&self) -> (String, String) {
        (self.key_id.clone(), self.secret.clone())
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// The `backup.provider` string for objects under `prefix` (may be empty).
    pub fn provider_spec(&self, prefix: &str) -> String {
        let sep = if prefix.is_empty() { "" } else { "/" };
        format!("s3 {}/{}{sep}{prefix}", self.endpoint(), self.bucket)
    }

    /// Environment for an `rbk` process talking to this server: credentials, region, and no
    /// AWS profile files or instance metadata from the machine running the tests.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// A bare S3 provider with this server's credentials (no retries), e.g. to count requests.
    pub fn s3_provider(&self, prefix: &str, mut options: S3Options) -> S3Provider {
        options.credentials = Some((self.key_id.clone(), self.secret.clone()));
        options.region = Some(REGION.into());
        let location =
            S3Location::parse(self.provider_spec(prefix).trim_start_matches("s3 ")).expect("spec");
        S3Provider::new(location, options)
    }

    /// What `backup.provider` gives a real user: S3 behind the default retry policy.
    pub fn provider(&self, prefix: &str) -> Arc<dyn Provider> {
        Arc::new(RetryingProvider::new(
            Arc::new(self.s3_provider(prefix, S3Options::default())),
            RetryPolicy::default(),
        ))
    }

    /// SIGKILLs node `i` (its data stays; [`Garage::restart_node`] brings it back).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart_node(&mut self, i: usize) {
        self.kill_node(i);
        self.spawn(i);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}
