//! `harness::collective::Collective` over MPI (the `mpi` crate, over OpenMPI or MPICH), for
//! ranks on CPUs launched by `mpirun`; [`crate::distributed`] initialises MPI and keeps its
//! `Universe` for the run.

use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;

use harness::collective::Collective;
use harness::{Error, Result};

/// `MPI_COMM_WORLD`. Every call is made from the thread that initialised MPI (the training
/// loop's), so MPI's lowest threading level serves.
pub struct Mpi;

impl Mpi {
    fn world(&self) -> SimpleCommunicator {
        SimpleCommunicator::world()
    }
}

/// MPI counts and offsets are C ints: a gather of more values is refused, not wrapped.
fn counts_and_offsets(counts: &[usize]) -> Result<(Vec<Count>, Vec<Count>)> {
    let too_many = || {
        Error::Config(format!(
            "an all-gather of {} values is more than one MPI message holds ({}): \
             use smaller batches (fewer shards per update)",
            counts.iter().sum::<usize>(),
            Count::MAX
        ))
    };
    let mut offsets = Vec::with_capacity(counts.len());
    let mut at: usize = 0;
    for &n in counts {
        offsets.push(Count::try_from(at).map_err(|_| too_many())?);
        at += n;
    }
    Count::try_from(at).map_err(|_| too_many())?;
    let counts = counts
        .iter()
        .map(|&n| Count::try_from(n).map_err(|_| too_many()))
        .collect::<Result<Vec<_>>>()?;
    Ok((counts, offsets))
}

fn gather_varcount<T: Equivalence + Default + Clone>(
    world: &SimpleCommunicator,
    mine: &[T],
    counts: &[usize],
) -> Result<Vec<T>> {
    let rank = world.rank() as usize;
    if counts.get(rank) != Some(&mine.len()) || counts.len() != world.size() as usize {
        return Err(Error::Config(format!(
            "rank {rank}: {} values to gather where the plan says {:?}",
            mine.len(),
            counts.get(rank)
        )));
    }
    let (counts, offsets) = counts_and_offsets(counts)?;
    let total: usize = counts.iter().map(|&n| n as usize).sum();
    let mut all = vec![T::default(); total];
    {
        let mut partition = PartitionMut::new(&mut all[..], counts, offsets);
        world.all_gather_varcount_into(mine, &mut partition);
    }
    Ok(all)
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world().rank() as usize
    }

    fn ranks(&self) -> usize {
        self.world().size() as usize
    }

    fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        gather_varcount(&self.world(), mine, counts)
    }

    fn all_gather_f64(&self, mine: &[f64], counts: &[usize]) -> Result<Vec<f64>> {
        gather_varcount(&self.world(), mine, counts)
    }

    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let world = self.world();
        let mut lengths = vec![0u64; world.size() as usize];
        world.all_gather_into(&(mine.len() as u64), &mut lengths[..]);
        let counts: Vec<usize> = lengths.iter().map(|&n| n as usize).collect();
        let all = gather_varcount(&world, mine, &counts)?;
        let mut at = 0;
        Ok(counts
            .iter()
            .map(|&n| {
                at += n;
                all[at - n..at].to_vec()
            })
            .collect())
    }

    fn describe(&self) -> String {
        let (major, minor) = mpi::environment::version();
        format!(
            "{} MPI ranks ({}, MPI {major}.{minor})",
            self.ranks(),
            mpi::environment::library_version()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
                .trim()
        )
    }
}
