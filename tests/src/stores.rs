//! The object stores Fundus runs on, for tests parametrised over all of them:
//! a local folder, Garage (S3), Azurite (Azure Blob) and fake-gcs-server
//! (Google Cloud Storage). `Backend::args` gives a fresh corner of the stack's
//! server of that kind; `StoreNode` starts a server of its own that a test
//! may take down and bring back.

use std::path::PathBuf;
use std::process::Command;

use crate::{Stack, root, run_ok, scratch_dir};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Folder,
    Garage,
    Azurite,
    FakeGcs,
}

impl Backend {
    pub const ALL: [Backend; 4] = [Backend::Folder, Backend::Garage, Backend::Azurite, Backend::FakeGcs];

    /// A fresh, empty corner (`prefix`) of the stack's server of this kind.
    pub fn args(self, stack: &Stack, prefix: &str) -> store::StoreArgs {
        let base = store::StoreArgs::default();
        match self {
            Backend::Folder => {}
            Backend::Garage => stack.answering("FUNDUS_S3_ENDPOINT"),
            Backend::Azurite => stack.answering("FUNDUS_STACK_AZURE_ENDPOINT"),
            Backend::FakeGcs => stack.answering("FUNDUS_STACK_GCS_ENDPOINT"),
        }
        match self {
            Backend::Folder => {
                store::StoreArgs { store_url: scratch_dir("blobs").join(prefix).to_string_lossy().into_owned(), ..base }
            }
            Backend::Garage => store::StoreArgs {
                store_url: format!("{}/{prefix}", stack.get("FUNDUS_STORE_URL")),
                s3_endpoint: Some(stack.get("FUNDUS_S3_ENDPOINT").to_owned()),
                s3_region: stack.get("FUNDUS_S3_REGION").to_owned(),
                s3_access_key: Some(stack.get("FUNDUS_S3_ACCESS_KEY").parse().expect("infallible")),
                s3_secret_key: Some(stack.get("FUNDUS_S3_SECRET_KEY").parse().expect("infallible")),
                ..base
            },
            Backend::Azurite => store::StoreArgs {
                store_url: format!("az://fundus/{prefix}"),
                azure_endpoint: Some(stack.get("FUNDUS_STACK_AZURE_ENDPOINT").to_owned()),
                azure_account: Some(stack.get("FUNDUS_STACK_AZURE_ACCOUNT").to_owned()),
                azure_access_key: Some(stack.get("FUNDUS_STACK_AZURE_ACCESS_KEY").parse().expect("infallible")),
                ..base
            },
            Backend::FakeGcs => store::StoreArgs {
                store_url: format!("gs://fundus/{prefix}"),
                gcs_endpoint: Some(stack.get("FUNDUS_STACK_GCS_ENDPOINT").to_owned()),
                gcs_anonymous: true,
                ..base
            },
        }
    }
}

/// A store server of the test's own (for a folder: the folder), stopped and
/// removed when dropped.
pub struct StoreNode {
    pub backend: Backend,
    dir: PathBuf,
    pub args: store::StoreArgs,
}

impl StoreNode {
    pub fn start(backend: Backend) -> StoreNode {
        let dir = scratch_dir(&format!("{backend:?}").to_lowercase());
        let mut node = StoreNode { backend, dir, args: store::StoreArgs::default() };
        node.args = match backend {
            Backend::Folder => store::StoreArgs { store_url: node.folder().to_string_lossy().into_owned(), ..Default::default() },
            _ => parse_exports(&node.lib(&format!("{}_node", node.function()))),
        };
        node
    }

    fn function(&self) -> &'static str {
        match self.backend {
            Backend::Folder => "",
            Backend::Garage => "garage",
            Backend::Azurite => "azurite",
            Backend::FakeGcs => "fake_gcs",
        }
    }

    fn folder(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    /// Runs a function of scripts/lib.sh on this node's folder.
    fn lib(&self, function: &str) -> String {
        let script = format!(". '{}' && {function} '{}'", root().join("scripts/lib.sh").display(), self.dir.display());
        run_ok(Command::new("bash").args(["-c", &script]))
    }

    /// The store goes away: the server stops (a folder is replaced by a file,
    /// so every write and read fails).
    pub fn stop(&self) {
        if self.backend == Backend::Folder {
            std::fs::rename(self.folder(), self.dir.join("away")).expect("moving the folder away");
            std::fs::write(self.folder(), b"not a folder").expect("a file in its place");
        } else {
            self.lib(&format!("{}_stop", self.function()));
        }
    }

    /// The store comes back with its data, where it was.
    pub fn restart(&self) {
        if self.backend == Backend::Folder {
            std::fs::remove_file(self.folder()).expect("removing the file");
            std::fs::rename(self.dir.join("away"), self.folder()).expect("moving the folder back");
        } else {
            let again = parse_exports(&self.lib(&format!("{}_node", self.function())));
            assert_eq!(again.env(), self.args.env(), "the node came back elsewhere");
        }
    }
}

impl Drop for StoreNode {
    fn drop(&mut self) {
        if self.backend != Backend::Folder {
            let _ = Command::new("bash")
                .args(["-c", &format!(". '{}' && {}_stop '{}'", root().join("scripts/lib.sh").display(), self.function(), self.dir.display())])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `export NAME='value'` lines into store settings.
fn parse_exports(text: &str) -> store::StoreArgs {
    let mut a = store::StoreArgs::default();
    for (k, v) in text.lines().filter_map(|l| l.trim().strip_prefix("export ")).filter_map(|l| l.split_once('=')) {
        let v = v.trim_matches('\'').to_owned();
        match k {
            "FUNDUS_STORE_URL" => a.store_url = v,
            "FUNDUS_S3_ENDPOINT" => a.s3_endpoint = Some(v),
            "FUNDUS_S3_REGION" => a.s3_region = v,
            "FUNDUS_S3_ACCESS_KEY" => a.s3_access_key = Some(v.parse().expect("infallible")),
            "FUNDUS_S3_SECRET_KEY" => a.s3_secret_key = Some(v.parse().expect("infallible")),
            "FUNDUS_AZURE_ENDPOINT" => a.azure_endpoint = Some(v),
            "FUNDUS_AZURE_ACCOUNT" => a.azure_account = Some(v),
            "FUNDUS_AZURE_ACCESS_KEY" => a.azure_access_key = Some(v.parse().expect("infallible")),
            "FUNDUS_GCS_ENDPOINT" => a.gcs_endpoint = Some(v),
            "FUNDUS_GCS_ANONYMOUS" => a.gcs_anonymous = v == "true",
            other => panic!("unexpected setting {other} from scripts/lib.sh"),
        }
    }
    a
}
