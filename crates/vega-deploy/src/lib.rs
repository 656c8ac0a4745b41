//! Deployment artefacts rendered from Vega configuration.
//!
//! Today: the load balancer in front of Vega nodes. The `load_balancer:`
//! block of seed `operations-and-reliability.md` §17.2 is parsed
//! ([`parse_load_balancer`]), checked with every problem reported at its
//! key path ([`LoadBalancerConfig::validate`]) and rendered as a complete
//! HAProxy configuration ([`render_haproxy`]). The block's types and rules
//! belong to the Vega configuration (`vega_config::balance`, where a whole
//! configuration checks them too) and are re-exported here. [`render_from_yaml`] does
//! all three and is what `vega lb render` calls. User documentation:
//! `docs/deployment.md`.
//!
//! ```
//! let yaml = "load_balancer:\n  backends:\n    - address: 127.0.0.1:50113\n";
//! let cfg = vega_deploy::render_from_yaml(yaml, &vega_deploy::RenderOptions::default())
//!     .map_err(|problems| problems.len())
//!     .unwrap();
//! assert!(cfg.contains("balance leastconn"));
//! assert!(cfg.contains("option httpchk GET /health/ready"));
//! ```
//!
//! This crate does no I/O and links neither DuckDB nor the server.

pub mod config;
pub mod haproxy;
mod parse;
pub mod validate;

pub use config::{
    Algorithm, Backend, HealthCheckConfig, LoadBalancerConfig, StickySessionConfig,
    LOAD_BALANCER_KEY,
};
pub use haproxy::{render_haproxy, server_name, RenderOptions};
pub use parse::parse_load_balancer;
pub use validate::{parse_address, BackendAddress, Host, Problem};

/// Reads the top-level `load_balancer:` block of a YAML document (other
/// top-level keys are ignored, so a whole Vega configuration file will do),
/// checks it and `options`, and renders `haproxy.cfg`.
///
/// Every problem is returned at once, each with its key path
/// (`load_balancer.backends[1].weight: must be 1..=256, is 0`); problems
/// with the options are under `options.`.
pub fn render_from_yaml(text: &str, options: &RenderOptions) -> Result<String, Vec<Problem>> {
    let config = parse_load_balancer(text)?;
    let problems = options.validate(&config);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(render_haproxy(&config, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_from_yaml_reports_block_problems() {
        let err = render_from_yaml(
            "load_balancer:\n  backends: [{address: 'a:1', weight: 999}]\n",
            &RenderOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.iter().map(Problem::to_string).collect::<Vec<_>>(),
            ["load_balancer.backends[0].weight: must be 1..=256, is 999"]
        );
    }

    #[test]
    fn render_from_yaml_reports_option_problems() {
        let mut options = RenderOptions::default();
        options.check_ports.insert("b:1".into(), 9090);
        let err = render_from_yaml("load_balancer:\n  backends: [{address: 'a:1'}]\n", &options)
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, "options.check_ports[b:1]");
    }

    #[test]
    fn render_from_yaml_renders_a_valid_document() {
        let text = render_from_yaml(
            "log: {level: info}\nload_balancer:\n  algorithm: ip_hash\n  backends: [{address: '10.0.0.1:50013'}]\n",
            &RenderOptions::default(),
        )
        .unwrap();
        assert!(text.contains("    balance source\n    hash-type consistent\n"));
        assert!(text.contains("    server vega-1 10.0.0.1:50013 weight 100 check\n"));
    }
}
