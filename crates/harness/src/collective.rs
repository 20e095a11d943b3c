//! Data-parallel training: the one small interface through which ranks (processes) share
//! their work, and the single-process case every run has without one.
//!
//! A batch of more than [`crate::model::SHARD`] windows is cut into shards of that many;
//! the ranks split the shards into contiguous blocks (rank 0 the first), each computes the
//! gradients of its own, and an all-gather gives every rank every shard's loss and
//! gradients, which each sums in shard order exactly as a single process does. The result
//! is the same bits whatever the number of ranks, so a run resumes on another count.
//! (An all-reduce would move fewer bytes, but the library picks its order of summation;
//! BENCHMARKS.md weighs the two.) A batch of one shard, and a model trained through candle's
//! autograd, run whole on every rank: the same result everywhere, with no speed-up.
//!
//! The implementations live with the program that starts the ranks (bench-cli's MPI one,
//! behind its `mpi` feature), so the harness and the models build without any collective
//! library, and turning one on rebuilds the program alone.
//!
//! Only rank 0 writes files and prints; every rank reads its inputs and evaluates, so that
//! all of them take the same decisions (best epoch, early stopping) without messages.

use std::sync::OnceLock;

use crate::{Error, Result};

/// How ranks exchange what they computed. Every rank calls the same methods in the same
/// order (a collective call); none returns before all ranks have made it.
pub trait Collective: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn ranks(&self) -> usize;
    /// Every rank's `mine`, concatenated in rank order; rank `r` sends `counts[r]` values.
    fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>>;
    /// As [`Collective::all_gather_f32`], for f64 values.
    fn all_gather_f64(&self, mine: &[f64], counts: &[usize]) -> Result<Vec<f64>>;
    /// Every rank's bytes, in rank order; their lengths may differ.
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// What carries the gradients, in words, for the run's header.
    fn describe(&self) -> String;
}

/// One process: every "gather" returns what it was given.
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn ranks(&self) -> usize {
        1
    }
    fn all_gather_f32(&self, mine: &[f32], _counts: &[usize]) -> Result<Vec<f32>> {
        Ok(mine.to_vec())
    }
    fn all_gather_f64(&self, mine: &[f64], _counts: &[usize]) -> Result<Vec<f64>> {
        Ok(mine.to_vec())
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![mine.to_vec()])
    }
    fn describe(&self) -> String {
        "one process".into()
    }
}

static INSTALLED: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// Makes `collective` the process's, for every run after; once per process, before the
/// first run (MPI is initialised once).
pub fn install(collective: Box<dyn Collective>) -> Result<()> {
    INSTALLED
        .set(collective)
        .map_err(|_| Error::Config("a collective is already installed".into()))
}

/// The process's collective: the installed one, else a single process.
pub fn current() -> &'static dyn Collective {
    match INSTALLED.get() {
        Some(c) => c.as_ref(),
        None => &SingleProcess,
    }
}

/// Whether this process writes the run's files and prints its lines: rank 0's job.
pub fn writes() -> bool {
    current().rank() == 0
}

/// The shards `[start, end)` each rank computes, for `shards` shards on `ranks` ranks:
/// contiguous blocks in rank order, the first `shards % ranks` ranks one more; a rank may
/// have none.
pub fn blocks(shards: usize, ranks: usize) -> Vec<std::ops::Range<usize>> {
    let (each, extra) = (shards / ranks, shards % ranks);
    let mut start = 0;
    (0..ranks)
        .map(|r| {
            let len = each + usize::from(r < extra);
            let block = start..start + len;
            start += len;
            block
        })
        .collect()
}

/// Each shard's loss and gradients (one value vector per parameter, in the parameters'
/// order), for all shards: this rank's `mine` (the shards of its block, in order) and every
/// other rank's, gathered, in shard order. `sizes` are the parameters' element counts.
pub fn gather_shards(
    collective: &dyn Collective,
    shards: usize,
    mine: Vec<(f64, Vec<Vec<f32>>)>,
    sizes: &[usize],
) -> Result<Vec<(f64, Vec<Vec<f32>>)>> {
    if collective.ranks() == 1 {
        return Ok(mine);
    }
    let per_shard: usize = sizes.iter().sum();
    let owned = blocks(shards, collective.ranks());
    let losses: Vec<f64> = mine.iter().map(|(loss, _)| *loss).collect();
    let mut values = Vec::with_capacity(mine.len() * per_shard);
    for (_, grads) in mine {
        values.extend(grads.into_iter().flatten());
    }
    let loss_counts: Vec<usize> = owned.iter().map(|b| b.len()).collect();
    let value_counts: Vec<usize> = loss_counts.iter().map(|n| n * per_shard).collect();
    let losses = collective.all_gather_f64(&losses, &loss_counts)?;
    let values = collective.all_gather_f32(&values, &value_counts)?;
    Ok(losses
        .into_iter()
        .zip(values.chunks_exact(per_shard.max(1)))
        .map(|(loss, flat)| {
            let mut at = 0;
            let grads = sizes
                .iter()
                .map(|&n| {
                    at += n;
                    flat[at - n..at].to_vec()
                })
                .collect();
            (loss, grads)
        })
        .collect())
}

/// Whether any rank asks to stop (its Ctrl-C or SIGTERM flag): every rank must stop after
/// the same update, or the others would wait for it forever.
pub fn any(collective: &dyn Collective, flag: bool) -> Result<bool> {
    if collective.ranks() == 1 {
        return Ok(flag);
    }
    let all = collective.all_gather_bytes(&[u8::from(flag)])?;
    Ok(all.iter().any(|b| b.first() == Some(&1)))
}

/// Refuses a run whose ranks differ in `about` (settings, model, data, binary, checkpoint:
/// whatever must be the same for them to train one model), naming the first rank that
/// differs from rank 0 and how.
pub fn check_same(collective: &dyn Collective, about: &serde_json::Value) -> Result<()> {
    if collective.ranks() == 1 {
        return Ok(());
    }
    let text = about.to_string();
    let all = collective.all_gather_bytes(text.as_bytes())?;
    let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    let Some(first) = parse(&all[0]) else {
        return Err(Error::Config(
            "rank 0 sent an unreadable run description".into(),
        ));
    };
    for (rank, bytes) in all.iter().enumerate().skip(1) {
        let Some(theirs) = parse(bytes) else {
            return Err(Error::Config(format!(
                "rank {rank} sent an unreadable run description"
            )));
        };
        let differences = crate::resume::differences(&first, &theirs);
        if !differences.is_empty() || first != theirs {
            return Err(Error::Config(format!(
                "rank {rank} differs from rank 0, so they cannot train one model (\"there\" is \
                 rank 0's, \"here\" rank {rank}'s): {}",
                match differences.is_empty() {
                    true => "their run descriptions differ".to_string(),
                    false => differences.join("; "),
                }
            )));
        }
    }
    Ok(())
}

/// What identifies this process's program: its size and a hash of its bytes, so that ranks
/// started from different builds are refused ([`check_same`]).
pub fn binary_identity() -> Result<String> {
    use std::hash::Hasher;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Config(format!("cannot find this program's file: {e}")))?;
    let bytes = std::fs::read(&exe).map_err(crate::error::io_err(&exe))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(&bytes);
    Ok(format!(
        "{} bytes, hash {:016x}",
        bytes.len(),
        hasher.finish()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_shard_once_in_rank_order() {
        for shards in 0..12 {
            for ranks in 1..6 {
                let b = blocks(shards, ranks);
                assert_eq!(b.len(), ranks);
                let flat: Vec<usize> = b.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(flat, (0..shards).collect::<Vec<_>>(), "{shards} on {ranks}");
                let lens: Vec<usize> = b.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
        assert_eq!(blocks(3, 2), vec![0..2, 2..3]);
    }

    /// A collective of `ranks` ranks simulated in one process: rank `rank`'s gathers
    /// return what `others` (every rank's contribution, this one's included) hold.
    struct Simulated {
        rank: usize,
        f32s: Vec<Vec<f32>>,
        f64s: Vec<Vec<f64>>,
    }

    impl Collective for Simulated {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.f32s.len()
        }
        fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
            assert_eq!(mine, &self.f32s[self.rank][..]);
            assert_eq!(
                counts.iter().sum::<usize>(),
                self.f32s.iter().map(Vec::len).sum::<usize>()
            );
            Ok(self.f32s.concat())
        }
        fn all_gather_f64(&self, mine: &[f64], _counts: &[usize]) -> Result<Vec<f64>> {
            assert_eq!(mine, &self.f64s[self.rank][..]);
            Ok(self.f64s.concat())
        }
        fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
            Ok(vec![mine.to_vec(); self.ranks()])
        }
        fn describe(&self) -> String {
            "simulated".into()
        }
    }

    #[test]
    fn gathered_shards_come_back_whole_and_in_shard_order() {
        // Three shards of two parameters (sizes 2 and 1) on two ranks: rank 0 has shards 0
        // and 1, rank 1 shard 2.
        let shard = |k: f32| (f64::from(k), vec![vec![k, k + 0.5], vec![-k]]);
        let flat = |ks: &[f32]| -> Vec<f32> {
            ks.iter()
                .flat_map(|&k| {
                    let (_, g) = shard(k);
                    g.into_iter().flatten()
                })
                .collect()
        };
        let sim = Simulated {
            rank: 1,
            f32s: vec![flat(&[0.0, 1.0]), flat(&[2.0])],
            f64s: vec![vec![0.0, 1.0], vec![2.0]],
        };
        let all = gather_shards(&sim, 3, vec![shard(2.0)], &[2, 1]).unwrap();
        assert_eq!(all, vec![shard(0.0), shard(1.0), shard(2.0)]);
    }

    #[test]
    fn a_rank_that_differs_is_named_with_what_differs() {
        struct Two(Vec<Vec<u8>>);
        impl Collective for Two {
            fn rank(&self) -> usize {
                0
            }
            fn ranks(&self) -> usize {
                self.0.len()
            }
            fn all_gather_f32(&self, _: &[f32], _: &[usize]) -> Result<Vec<f32>> {
                unreachable!()
            }
            fn all_gather_f64(&self, _: &[f64], _: &[usize]) -> Result<Vec<f64>> {
                unreachable!()
            }
            fn all_gather_bytes(&self, _: &[u8]) -> Result<Vec<Vec<u8>>> {
                Ok(self.0.clone())
            }
            fn describe(&self) -> String {
                "two".into()
            }
        }
        let a = serde_json::json!({"epochs": 2, "lr": 0.001});
        let b = serde_json::json!({"epochs": 3, "lr": 0.001});
        let same = Two(vec![a.to_string().into(), a.to_string().into()]);
        check_same(&same, &a).unwrap();
        let differ = Two(vec![
            a.to_string().into(),
            a.to_string().into(),
            b.to_string().into(),
        ]);
        let err = check_same(&differ, &a).unwrap_err().to_string();
        assert!(err.contains("rank 2") && err.contains("epochs"), "{err}");
        assert!(any(&same, false).is_ok_and(|x| !x));
    }
}
