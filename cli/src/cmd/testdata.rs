//! `rbk testdata generate|advance|create`: realistic module state with real RocksDB PStates,
//! for trying rbk out and for benchmarks.

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::{Ctx, usage};

#[derive(Subcommand, Debug)]
pub enum TestdataCommand {
    /// Write a new module into the data dir.
    Generate {
        #[arg(long, default_value = "com.rbk.BankModule")]
        module: String,
        #[arg(long, default_value_t = 4)]
        tasks: u32,
        #[arg(long = "size-mib", default_value_t = 64)]
        size_mib: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Create an empty module that `rbk serve` can run (definition `bank`, `pageviews` or
    /// `relay`).
    Create {
        #[arg(long, default_value = "com.rbk.LiveBank")]
        module: String,
        #[arg(long, default_value = "bank")]
        definition: String,
        #[arg(long, default_value_t = 4)]
        tasks: u32,
        /// Its topologies read their depot of this module instead of their own (module.json
        /// then says so in `subscribes` and `dependencies`), e.g. a `relay` module reading
        /// another `relay` module's `*events`.
        #[arg(long, value_name = "MODULE")]
        reads: Option<String>,
    },
    /// Move a generated module one generation forward.
    Advance {
        #[arg(long, default_value = "com.rbk.BankModule")]
        module: String,
        #[arg(long, default_value_t = 5)]
        percent: u64,
    },
}

pub fn run(ctx: &Ctx, command: &TestdataCommand) -> Result<()> {
    match command {
        TestdataCommand::Generate {
            module,
            tasks,
            size_mib,
            seed,
        } => {
            let spec = rbk_engine::testdata::GenSpec {
                module: module.clone(),
                tasks: *tasks,
                size_mib: *size_mib,
                seed: *seed,
                ..Default::default()
            };
            if !spec.tasks.is_power_of_two() {
                return Err(usage(format!(
                    "--tasks {} is not a power of two",
                    spec.tasks
                )));
            }
            std::fs::create_dir_all(&ctx.cfg.data_dir)
                .with_context(|| format!("creating {}", ctx.cfg.data_dir.display()))?;
            rbk_engine::testdata::generate(&ctx.cfg.data_dir, &spec)?;
            outln!(
                "{}",
                rbk_engine::layout::module_dir(&ctx.cfg.data_dir, module).display()
            );
        }
        TestdataCommand::Advance { module, percent } => {
            let generation = rbk_engine::testdata::advance(&ctx.cfg.data_dir, module, *percent)?;
            outln!("{module} generation {generation}");
        }
        TestdataCommand::Create {
            module,
            definition,
            tasks,
            reads,
        } => {
            std::fs::create_dir_all(&ctx.cfg.data_dir)
                .with_context(|| format!("creating `{}`", ctx.cfg.data_dir.display()))?;
            let dir = rbk_engine::host::create_module_reading(
                &ctx.cfg.data_dir,
                module,
                *tasks,
                definition,
                reads.as_deref(),
            )?;
            outln!(
                "created {module} ({definition}, {tasks} tasks) in {}",
                dir.display()
            );
        }
    }
    Ok(())
}
