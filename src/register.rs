//! `switchyard register`: keeps one service instance registered in the Redis registry, sidecar
//! style, and deregisters it on SIGTERM or SIGINT.

use crate::cli::RegisterArgs;
use std::process::ExitCode;
use std::time::Duration;
use switchyard::discovery::registry::{Instance, Keys, Registration};
use tokio_util::sync::CancellationToken;

/// Runs until stopped; exit code 2 for bad arguments, 3 if the runtime cannot start.
pub fn register(args: RegisterArgs) -> ExitCode {
    if let Err(problem) = check(&args) {
        eprintln!("switchyard register: {problem}");
        return ExitCode::from(2);
    }
    let client = match redis::Client::open(args.redis.as_str()) {
        Ok(client) => client,
        Err(err) => {
            eprintln!("switchyard register: --redis: {err}");
            return ExitCode::from(2);
        }
    };
    let registration = Registration {
        client,
        keys: Keys::new(&args.service),
        instance: Instance {
            address: args.address,
            weight: args.weight,
            metadata: args.metadata.into_iter().collect(),
        },
        ttl: args.ttl,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("switchyard register: cannot start: {err}");
            return ExitCode::from(3);
        }
    };
    crate::block_on(
        &runtime,
        Box::pin(async {
            let stop = CancellationToken::new();
            let signals = stop.clone();
            tokio::spawn(async move {
                switchyard::shutdown::signal().await;
                signals.cancel();
            });
            match registration.keep(stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(%err, "could not deregister; the registration expires by itself");
                    ExitCode::FAILURE
                }
            }
        }),
    )
}

fn check(args: &RegisterArgs) -> Result<(), String> {
    if !switchyard::config::is_name(&args.service) {
        return Err(format!(
            "--service: {:?} is not a service name",
            args.service
        ));
    }
    let address_ok = args
        .address
        .parse::<http::uri::Authority>()
        .is_ok_and(|a| a.port_u16().is_some_and(|p| p != 0));
    if !address_ok {
        return Err(format!("--address: {:?} is not host:port", args.address));
    }
    if args.ttl < Duration::from_secs(1) {
        return Err("--ttl: must be at least 1s".to_owned());
    }
    Ok(())
}
