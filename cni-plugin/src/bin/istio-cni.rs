//! The chained CNI plugin; everything is in [`cni_plugin::plugin`].

fn main() {
    std::process::exit(cni_plugin::plugin::main());
}
