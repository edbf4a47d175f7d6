//! How ranks split into expert-parallel groups and the data-parallel groups across them.

/// `world = dp x ep` ranks: consecutive blocks of `ep` ranks form one expert-parallel group
/// (together they hold one copy of every expert, expert `e` on member `e / (E / ep)`); the
/// ranks with the same position in their block form one expert-data-parallel group (they hold
/// the same experts and average those gradients). Every rank reads its own data shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Number of processes.
    pub world: usize,
    /// Expert-parallel degree (1: every rank holds every expert).
    pub ep: usize,
    /// This process's global rank.
    pub rank: usize,
}

impl Topology {
    /// A layout of `world` ranks with expert-parallel degree `ep`; an error unless `ep` divides
    /// `world`.
    pub fn new(world: usize, ep: usize, rank: usize) -> Result<Self, String> {
        if ep == 0 || world % ep != 0 || rank >= world {
            return Err(format!(
                "expert_parallel = {ep} must divide the world size {world} (rank {rank})"
            ));
        }
        Ok(Topology { world, ep, rank })
    }

    /// Position within the expert-parallel group.
    pub fn ep_rank(&self) -> usize {
        self.rank % self.ep
    }

    /// Index of this rank's expert-parallel group.
    pub fn ep_group(&self) -> usize {
        self.rank / self.ep
    }

    /// Global ranks of this rank's expert-parallel group.
    pub fn ep_ranks(&self) -> Vec<usize> {
        let g = self.ep_group();
        (g * self.ep..(g + 1) * self.ep).collect()
    }

    /// Global ranks that hold the same experts as this one.
    pub fn expert_dp_ranks(&self) -> Vec<usize> {
        (0..self.world / self.ep)
            .map(|i| i * self.ep + self.ep_rank())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_partition_the_world() {
        let t = Topology::new(4, 2, 3).unwrap();
        assert_eq!(t.ep_rank(), 1);
        assert_eq!(t.ep_ranks(), vec![2, 3]);
        assert_eq!(t.expert_dp_ranks(), vec![1, 3]);
        assert!(Topology::new(4, 3, 0).is_err());
        assert!(Topology::new(2, 2, 2).is_err());
    }
}
