//! The chained CNI plugin; everything is in [`cni_plugin::plugin`].
//!
//! A container runtime runs it with `CNI_COMMAND` set and the network configuration on stdin, and passes no
//! arguments; arguments are then ignored. Run by a person (no `CNI_COMMAND`) with arguments, it answers `--help`
//! and `--version` (exit 0) or refuses the arguments (exit 2) before touching stdin. Without `CNI_COMMAND` and
//! without arguments it stays a CNI plugin and reports the missing variable as the CNI spec asks (code 4).

use clap::Parser;
use cni_plugin::plugin::conf::SUPPORTED_VERSIONS;

#[derive(Parser)]
#[command(
    name = "istio-cni",
    version,
    about = "The chained CNI plugin of the ambient mesh: on ADD it asks the node agent (cni-agent) to enroll an \
             ambient pod and passes prevResult through; DEL, CHECK and GC succeed; STATUS reports whether the agent \
             can serve ADD; VERSION lists the protocol versions.",
    override_usage = "CNI_COMMAND=<ADD|DEL|CHECK|STATUS|GC|VERSION> [CNI_*=...] istio-cni < network-config.json\n       \
                      istio-cni [--help | --version]",
    after_help = format!(
        "Run by the container runtime, which passes everything in the environment and on stdin (CNI spec):\n  \
         CNI_COMMAND      ADD, DEL, CHECK, STATUS, GC or VERSION\n  \
         CNI_CONTAINERID  container id (ADD, DEL, CHECK)\n  \
         CNI_NETNS        path of the pod's network namespace (ADD, CHECK)\n  \
         CNI_IFNAME       interface name (ADD, DEL, CHECK)\n  \
         CNI_ARGS         K=V;K=V, with K8S_POD_NAME and K8S_POD_NAMESPACE\n  \
         CNI_PATH         plugin search path (GC)\n\n\
         CNI protocol versions supported: {}",
        SUPPORTED_VERSIONS.join(", ")
    )
)]
struct Cli {}

fn main() {
    let in_cni = std::env::var_os("CNI_COMMAND").is_some_and(|c| !c.is_empty());
    if !in_cni && std::env::args_os().len() > 1 {
        // Prints help or the version and exits 0, or a usage error and exits 2.
        let Cli {} = Cli::parse();
    }
    std::process::exit(cni_plugin::plugin::main());
}
