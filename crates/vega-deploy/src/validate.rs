//! Rules that a well-typed `load_balancer` block must also follow
//! ([`LoadBalancerConfig::validate`](crate::LoadBalancerConfig::validate)),
//! and the parsing of backend addresses. Both live in `vega-config`, which
//! checks the block with the rest of a configuration; they are re-exported
//! here under the names this crate has always used.

pub use vega_config::net::{parse_address, BackendAddress, Host};

/// One thing wrong with a `load_balancer` block or with the render
/// options: a key path such as `load_balancer.backends[1].weight` (empty
/// for problems with the document as a whole) and what is wrong.
pub use vega_config::KeyProblem as Problem;
