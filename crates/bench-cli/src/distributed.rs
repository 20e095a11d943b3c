//! Data-parallel training across processes: a run launched by `mpirun -np R bench-cli ...`
//! (OpenMPI's or MPICH's launcher) trains one model on R ranks through
//! `harness::collective` when bench-cli is built with the `mpi` feature; without it, such a
//! launch is refused, since R independent runs would write over each other's files.

use std::sync::Mutex;

use anyhow::Result;

/// The ranks a launcher started, as it tells its processes (OpenMPI, MPICH's Hydra, PMIx).
fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

/// The ranks started on this machine, which share its cores.
pub fn ranks_on_this_machine() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
        .unwrap_or(1)
}

/// MPI's universe while it is up: dropping it finalises MPI.
#[cfg(feature = "mpi")]
static UNIVERSE: Mutex<Option<mpi::environment::Universe>> = Mutex::new(None);
#[cfg(not(feature = "mpi"))]
static UNIVERSE: Mutex<Option<()>> = Mutex::new(None);

/// Joins the ranks if a launcher started several: initialises MPI and makes it the
/// harness's collective. A plain run (or one rank) stays a single process.
pub fn start() -> Result<()> {
    let ranks = match launched_ranks() {
        Some(n) if n > 1 => n,
        _ => return Ok(()),
    };
    #[cfg(feature = "mpi")]
    {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Single)
            .ok_or_else(|| anyhow::anyhow!("MPI was already initialised"))?;
        *UNIVERSE.lock().expect("not poisoned") = Some(universe);
        harness::collective::install(Box::new(crate::mpi_collective::Mpi))?;
        let found = harness::collective::current().ranks();
        if found != ranks {
            anyhow::bail!("the launcher said {ranks} ranks but MPI found {found}");
        }
        Ok(())
    }
    #[cfg(not(feature = "mpi"))]
    anyhow::bail!(
        "launched as one of {ranks} ranks (mpirun), but this bench-cli was built without \
         MPI: build it with `cargo build --release -p bench-cli --features mpi` (needs an MPI \
         library and libclang: `apt-get install libopenmpi-dev libclang-dev`)"
    )
}

/// Ends MPI after a run that succeeded on every rank.
pub fn finish() {
    drop(UNIVERSE.lock().map(|mut u| u.take()));
}

/// After an error on this rank: with several ranks, ends all of them (the others may be
/// waiting for this one in a collective call, and would wait forever). `mpirun` then says
/// which rank called for the end; the error itself has been printed, with the rank.
pub fn abort_all() {
    #[cfg(feature = "mpi")]
    if harness::collective::current().ranks() > 1 {
        use mpi::traits::Communicator;
        mpi::topology::SimpleCommunicator::world().abort(1);
    }
}

/// `"rank r: "` before a line of a run on several ranks; nothing otherwise.
pub fn rank_prefix() -> String {
    let collective = harness::collective::current();
    match collective.ranks() {
        1 => String::new(),
        _ => format!("rank {}: ", collective.rank()),
    }
}
