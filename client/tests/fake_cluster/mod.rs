//! An in-process fake of a three-node Atoll cluster for client tests: real
//! gRPC servers on localhost, one shared in-memory "world" standing in for
//! Raft. It checks request headers like a node would (shard, epoch, range,
//! leadership), opens write sessions and refuses writes of unknown ones
//! with `SessionExpired`, deduplicates writes on `(client_id, seq)`, caps
//! scan pages, and lets a test move leaders, split shards, take nodes down,
//! lose replies and expire sessions.

// Shared by several test binaries; each uses a different part.
#![allow(dead_code, clippy::result_large_err)]

mod txn;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use atoll_proto::admin_server::{Admin, AdminServer};
use atoll_proto::kv_server::{Kv, KvServer};
use atoll_proto::*;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What a deduplicated write answered the first time.
#[derive(Debug, Clone)]
enum Saved {
    Done,
    Existed(bool),
    Cas(bool, Option<Vec<u8>>),
    Txn(bool, Vec<TxnOpResult>),
}

#[derive(Debug, Default)]
pub struct World {
    pub addrs: Vec<String>,
    pub shards: Vec<ShardDescriptor>,
    pub leaders: HashMap<u64, u64>,
    pub down: BTreeSet<u64>,
    pub data: BTreeMap<Vec<u8>, Vec<u8>>,
    dedup: HashMap<(u64, u64), Saved>,
    /// Open sessions: client id -> shard id. Ids are unique across shards.
    pub sessions: HashMap<u64, u64>,
    next_session: u64,
    pub applied_writes: u64,
    pub lose_next_reply: bool,
    /// With `lose_next_reply`: also evict the writer's session, as if other
    /// clients had opened enough sessions before the retry arrived.
    pub expire_with_lost_reply: bool,
    pub page_cap: usize,
    /// The nodes answer `Kv.Multiplex` with `Unimplemented` (an older
    /// version): every operation must come as a unary call.
    pub no_multiplex: bool,
    /// Every request that reached a node: (node id, method).
    pub log: Vec<(u64, &'static str)>,
    /// The `grpc-timeout` header of every Kv request (an operation sent on a
    /// `Multiplex` stream counts as one), in arrival order.
    pub kv_deadlines: Vec<Option<String>>,
    /// (node, shard): the node does not host the shard (`ShardNotFound`).
    pub not_hosted: BTreeSet<(u64, u64)>,
    /// Errors the shard leader answers the next `SplitShard`s with, in
    /// order, before it splits.
    pub split_errors: VecDeque<Error>,
}

impl World {
    pub fn addr(&self, node: u64) -> String {
        self.addrs[(node - 1) as usize].clone()
    }

    /// Splits the shard holding `at` into two, bumping both epochs.
    pub fn split(&mut self, at: &[u8], new_id: u64) {
        let i = self
            .shard_index_for(at)
            .expect("a shard holds the split key");
        let mut right = self.shards[i].clone();
        let left = &mut self.shards[i];
        let epoch = left.epoch.get_or_insert_with(Epoch::default);
        epoch.version += 1;
        left.end = at.to_vec();
        right.id = new_id;
        right.start = at.to_vec();
        right.epoch = left.epoch;
        let leader = self.leaders[&left.id];
        self.leaders.insert(new_id, leader);
        self.shards.push(right);
    }

    fn shard_index_for(&self, key: &[u8]) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| s.start.as_slice() <= key && (s.end.is_empty() || key < s.end.as_slice()))
    }

    fn described(&self) -> Vec<ShardDescriptor> {
        let mut shards = self.shards.clone();
        for s in &mut shards {
            s.leader_id = self.leaders.get(&s.id).copied();
        }
        shards
    }

    /// The checks a node makes before serving a request.
    fn check(
        &self,
        node: u64,
        header: Option<RequestHeader>,
        keys: &[&[u8]],
        leader_only: bool,
    ) -> Result<ShardDescriptor, Error> {
        let header = header.unwrap_or_default();
        let err = |kind| Error {
            message: "fake".into(),
            kind: Some(kind),
        };
        let hosted = !self.not_hosted.contains(&(node, header.shard_id));
        let shard = self.shards.iter().find(|s| s.id == header.shard_id);
        let Some(shard) = shard.filter(|_| hosted) else {
            return Err(err(error::Kind::ShardNotFound(ShardNotFound {
                shard_id: header.shard_id,
            })));
        };
        if header.epoch.is_some() && header.epoch != shard.epoch {
            return Err(err(error::Kind::EpochMismatch(EpochMismatch {
                current: self.described(),
            })));
        }
        for key in keys {
            let inside = shard.start.as_slice() <= *key
                && (shard.end.is_empty() || *key < shard.end.as_slice());
            if !inside {
                let key = key.to_vec();
                return Err(err(error::Kind::KeyOutOfRange(KeyOutOfRange {
                    key,
                    shard: Some(shard.clone()),
                })));
            }
        }
        let leader = self.leaders[&shard.id];
        if leader_only && leader != node {
            return Err(err(error::Kind::NotLeader(NotLeader {
                shard_id: shard.id,
                leader_id: Some(leader),
                leader_addr: self.addr(leader),
            })));
        }
        Ok(shard.clone())
    }

    /// Opens a session on `shard`; returns its id.
    fn open_session(&mut self, shard: u64) -> u64 {
        self.next_session += 1;
        self.sessions.insert(self.next_session, shard);
        self.next_session
    }

    /// Refuses a write whose session the shard does not know.
    fn check_session(&self, shard: &ShardDescriptor, id: &Option<WriteId>) -> Result<(), Error> {
        let client_id = id.as_ref().map_or(0, |id| id.client_id);
        if self.sessions.get(&client_id) == Some(&shard.id) {
            return Ok(());
        }
        Err(Error {
            message: "fake: session expired".into(),
            kind: Some(error::Kind::SessionExpired(SessionExpired {
                shard_id: shard.id,
                client_id,
            })),
        })
    }

    /// The checks of a write: those of any request, then its session.
    fn check_write(
        &self,
        node: u64,
        header: Option<RequestHeader>,
        keys: &[&[u8]],
        id: &Option<WriteId>,
    ) -> Result<(), Error> {
        let shard = self.check(node, header, keys, true)?;
        self.check_session(&shard, id)
    }

    /// Applies a write once per write id; `apply` runs on first sight only.
    fn write(
        &mut self,
        id: Option<WriteId>,
        apply: impl FnOnce(&mut Self) -> Saved,
    ) -> Result<Saved, Status> {
        let id = id.expect("writes carry a write id");
        assert!(
            id.first_incomplete <= id.seq,
            "first_incomplete ran past the write itself"
        );
        let saved = match self.dedup.get(&(id.client_id, id.seq)) {
            Some(saved) => saved.clone(),
            None => {
                let saved = apply(self);
                self.applied_writes += 1;
                self.dedup.insert((id.client_id, id.seq), saved.clone());
                saved
            }
        };
        if std::mem::take(&mut self.lose_next_reply) {
            if std::mem::take(&mut self.expire_with_lost_reply) {
                self.sessions.remove(&id.client_id);
            }
            return Err(Status::unavailable("fake: reply lost after apply"));
        }
        Ok(saved)
    }
}

pub type Shared = Arc<Mutex<World>>;

pub fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.lock().expect("world lock")
}

#[derive(Clone)]
struct Node {
    id: u64,
    world: Shared,
}

impl Node {
    /// Logs the request; fails it at the transport level if the node is down.
    fn enter(&self, method: &'static str) -> Result<MutexGuard<'_, World>, Status> {
        let mut world = lock(&self.world);
        if world.down.contains(&self.id) {
            return Err(Status::unavailable("fake: node down"));
        }
        world.log.push((self.id, method));
        Ok(world)
    }

    /// [`Self::enter`] for a Kv request, after noting its deadline.
    fn enter_kv<T>(
        &self,
        method: &'static str,
        req: &Request<T>,
    ) -> Result<MutexGuard<'_, World>, Status> {
        let deadline = req.metadata().get("grpc-timeout");
        let deadline = deadline.and_then(|v| v.to_str().ok()).map(str::to_string);
        lock(&self.world).kv_deadlines.push(deadline);
        self.enter(method)
    }
}

type Replies =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<StreamedReplies, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for Node {
    type MultiplexStream = Replies;

    /// Runs each operation as its unary call, concurrently, like a node; or
    /// answers `Unimplemented` when the world says so (a node of an older
    /// version).
    async fn multiplex(
        &self,
        req: Request<tonic::Streaming<StreamedRequests>>,
    ) -> Result<Response<Replies>, Status> {
        use futures::StreamExt;
        {
            let mut world = lock(&self.world);
            world.log.push((self.id, "multiplex"));
            if world.no_multiplex {
                return Err(Status::unimplemented("fake: no Kv.Multiplex"));
            }
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let node = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                for op in batch.ops {
                    let (node, tx) = (node.clone(), tx.clone());
                    tokio::spawn(async move {
                        let _ = tx.unbounded_send(atoll_proto::streamed::run(&node, op).await);
                    });
                }
            }
        });
        let replies = rx
            .ready_chunks(64)
            .map(|replies| Ok(StreamedReplies { replies }));
        Ok(Response::new(Box::pin(replies)))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let world = self.enter_kv("get", &req)?;
        let req = req.into_inner();
        let leader_only = req.consistency == ReadConsistency::Linearizable as i32;
        let reply = match world.check(self.id, req.header, &[&req.key], leader_only) {
            Err(e) => GetResponse {
                error: Some(e),
                ..Default::default()
            },
            Ok(_) => GetResponse {
                value: world.data.get(&req.key).cloned(),
                applied_index: world.applied_writes,
                error: None,
            },
        };
        Ok(Response::new(reply))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let mut world = self.enter_kv("put", &req)?;
        let req = req.into_inner();
        if let Err(e) = world.check_write(self.id, req.header, &[&req.key], &req.write_id) {
            return Ok(Response::new(PutResponse { error: Some(e) }));
        }
        world.write(req.write_id, |w| {
            w.data.insert(req.key, req.value);
            Saved::Done
        })?;
        Ok(Response::new(PutResponse { error: None }))
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let mut world = self.enter_kv("delete", &req)?;
        let req = req.into_inner();
        if let Err(e) = world.check_write(self.id, req.header, &[&req.key], &req.write_id) {
            return Ok(Response::new(DeleteResponse {
                error: Some(e),
                existed: false,
            }));
        }
        let saved = world.write(req.write_id, |w| {
            Saved::Existed(w.data.remove(&req.key).is_some())
        })?;
        let existed = matches!(saved, Saved::Existed(true));
        Ok(Response::new(DeleteResponse {
            error: None,
            existed,
        }))
    }

    async fn cas(&self, req: Request<CasRequest>) -> Result<Response<CasResponse>, Status> {
        let mut world = self.enter_kv("cas", &req)?;
        let req = req.into_inner();
        if let Err(e) = world.check_write(self.id, req.header, &[&req.key], &req.write_id) {
            return Ok(Response::new(CasResponse {
                error: Some(e),
                ..Default::default()
            }));
        }
        let saved = world.write(req.write_id, |w| {
            let previous = w.data.get(&req.key).cloned();
            let succeeded = previous == req.expected;
            if succeeded {
                match req.new_value {
                    Some(v) => w.data.insert(req.key, v),
                    None => w.data.remove(&req.key),
                };
            }
            Saved::Cas(succeeded, previous)
        })?;
        let Saved::Cas(succeeded, previous) = saved else {
            return Err(Status::internal("fake: wrong saved reply"));
        };
        Ok(Response::new(CasResponse {
            error: None,
            succeeded,
            previous,
        }))
    }

    async fn scan(&self, req: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let world = self.enter_kv("scan", &req)?;
        let req = req.into_inner();
        let shard = match world.check(self.id, req.header, &[&req.start], true) {
            Err(e) => {
                return Ok(Response::new(ScanResponse {
                    error: Some(e),
                    ..Default::default()
                }))
            }
            Ok(shard) => shard,
        };
        let stop = match (req.end.is_empty(), shard.end.is_empty()) {
            (true, _) => shard.end.clone(),
            (false, true) => req.end.clone(),
            (false, false) => req.end.clone().min(shard.end.clone()),
        };
        let cap = match req.limit {
            0 => world.page_cap,
            n => world.page_cap.min(n as usize),
        };
        let mut matching = world
            .data
            .range(req.start.clone()..)
            .take_while(|(k, _)| stop.is_empty() || k.as_slice() < stop.as_slice())
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            });
        let kvs: Vec<KeyValue> = matching.by_ref().take(cap).collect();
        let truncated = matching.next().is_some();
        Ok(Response::new(ScanResponse {
            error: None,
            kvs,
            shard_end: shard.end,
            truncated,
            applied_index: world.applied_writes,
        }))
    }

    async fn batch(&self, req: Request<BatchRequest>) -> Result<Response<BatchResponse>, Status> {
        let mut world = self.enter_kv("batch", &req)?;
        let req = req.into_inner();
        let keys: Vec<&[u8]> = req.mutations.iter().map(|m| m.key.as_slice()).collect();
        if let Err(e) = world.check_write(self.id, req.header, &keys, &req.write_id) {
            return Ok(Response::new(BatchResponse { error: Some(e) }));
        }
        world.write(req.write_id, |w| {
            for m in req.mutations {
                match m.value {
                    Some(v) => w.data.insert(m.key, v),
                    None => w.data.remove(&m.key),
                };
            }
            Saved::Done
        })?;
        Ok(Response::new(BatchResponse { error: None }))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let mut world = self.enter_kv("txn", &req)?;
        let req = req.into_inner();
        let compared = req.compares.iter().map(|c| c.key.as_slice());
        let keys: Vec<&[u8]> = compared
            .chain(
                req.success
                    .iter()
                    .chain(&req.failure)
                    .filter_map(|op| op.op.as_ref())
                    .map(|op| match op {
                        txn_op::Op::Put(p) => p.key.as_slice(),
                        txn_op::Op::Delete(d) => d.key.as_slice(),
                        txn_op::Op::Get(g) => g.key.as_slice(),
                    }),
            )
            .collect();
        if let Err(e) = world.check_write(self.id, req.header, &keys, &req.write_id) {
            return Ok(Response::new(TxnResponse {
                error: Some(e),
                ..Default::default()
            }));
        }
        let saved = world.write(req.write_id, |w| {
            let (succeeded, results) =
                txn::run(&mut w.data, &req.compares, req.success, req.failure);
            Saved::Txn(succeeded, results)
        })?;
        let Saved::Txn(succeeded, results) = saved else {
            return Err(Status::internal("fake: wrong saved reply"));
        };
        Ok(Response::new(TxnResponse {
            error: None,
            succeeded,
            results,
        }))
    }

    async fn open_session(
        &self,
        req: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        let mut world = self.enter_kv("open_session", &req)?;
        let reply = match world.check(self.id, req.into_inner().header, &[], true) {
            Err(e) => OpenSessionResponse {
                error: Some(e),
                client_id: 0,
            },
            Ok(shard) => OpenSessionResponse {
                error: None,
                client_id: world.open_session(shard.id),
            },
        };
        Ok(Response::new(reply))
    }

    async fn shards(
        &self,
        req: Request<ShardsRequest>,
    ) -> Result<Response<ShardsResponse>, Status> {
        let world = self.enter_kv("shards", &req)?;
        Ok(Response::new(ShardsResponse {
            shards: world.described(),
        }))
    }
}

#[tonic::async_trait]
impl Admin for Node {
    async fn init_cluster(
        &self,
        _: Request<InitClusterRequest>,
    ) -> Result<Response<AdminResult>, Status> {
        drop(self.enter("init_cluster")?);
        Ok(Response::new(AdminResult { error: None }))
    }

    async fn add_learner(
        &self,
        req: Request<AddLearnerRequest>,
    ) -> Result<Response<AdminResult>, Status> {
        let world = self.enter("add_learner")?;
        let header = Some(RequestHeader {
            shard_id: req.into_inner().shard_id,
            epoch: None,
        });
        let error = world.check(self.id, header, &[], true).err();
        Ok(Response::new(AdminResult { error }))
    }

    async fn change_membership(
        &self,
        req: Request<ChangeMembershipRequest>,
    ) -> Result<Response<AdminResult>, Status> {
        let world = self.enter("change_membership")?;
        let header = Some(RequestHeader {
            shard_id: req.into_inner().shard_id,
            epoch: None,
        });
        let error = world.check(self.id, header, &[], true).err();
        Ok(Response::new(AdminResult { error }))
    }

    /// Moves the leader of a shard to any of nodes 1-3 that is up; node 4
    /// and above are "not voters".
    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let req = req.into_inner();
        let mut world = self.enter("transfer_leader")?;
        let header = Some(RequestHeader {
            shard_id: req.shard_id,
            epoch: None,
        });
        if let Err(error) = world.check(self.id, header, &[], true) {
            return Ok(Response::new(TransferLeaderResponse {
                error: Some(error),
                ..Default::default()
            }));
        }
        use transfer_leader_failure::Reason;
        let target = req.target_node;
        let failure = |reason: Reason, message: &str| TransferLeaderFailure {
            reason: reason as i32,
            message: format!("fake: {message}"),
            leader_id: Some(self.id),
        };
        let reply = if !(1..=3).contains(&target) {
            TransferLeaderResponse {
                failure: Some(failure(Reason::TargetNotVoter, "not a voter")),
                ..Default::default()
            }
        } else if world.down.contains(&target) {
            TransferLeaderResponse {
                failure: Some(failure(Reason::TargetUnreachable, "target down")),
                ..Default::default()
            }
        } else {
            world.leaders.insert(req.shard_id, target);
            TransferLeaderResponse {
                leader_id: target,
                term: 2,
                paused_ms: u64::from(target != self.id) * 7,
                ..Default::default()
            }
        };
        Ok(Response::new(reply))
    }

    async fn create_replica(
        &self,
        _: Request<CreateReplicaRequest>,
    ) -> Result<Response<AdminResult>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn cluster_info(
        &self,
        _: Request<atoll_proto::ClusterInfoRequest>,
    ) -> Result<Response<atoll_proto::ClusterInfoResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn record_started(
        &self,
        _: Request<atoll_proto::RecordStartedRequest>,
    ) -> Result<Response<AdminResult>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn change_replica(
        &self,
        _: Request<atoll_proto::ChangeReplicaRequest>,
    ) -> Result<Response<AdminResult>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn remove_replica(
        &self,
        _: Request<atoll_proto::RemoveReplicaRequest>,
    ) -> Result<Response<AdminResult>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn compact(&self, _: Request<CompactRequest>) -> Result<Response<AdminResult>, Status> {
        drop(self.enter("compact")?);
        Ok(Response::new(AdminResult { error: None }))
    }

    /// Answers the queued `split_errors` first; then splits at the key if
    /// it is strictly inside the shard. Without a key, it refuses as a
    /// shard with too few keys does.
    async fn split_shard(
        &self,
        req: Request<SplitShardRequest>,
    ) -> Result<Response<SplitShardResponse>, Status> {
        let req = req.into_inner();
        let mut world = self.enter("split_shard")?;
        let refuse = |error| {
            Ok(Response::new(SplitShardResponse {
                error: Some(error),
                ..Default::default()
            }))
        };
        let header = Some(RequestHeader {
            shard_id: req.shard_id,
            epoch: None,
        });
        let shard = match world.check(self.id, header, &[], true) {
            Ok(shard) => shard,
            Err(error) => return refuse(error),
        };
        if let Some(error) = world.split_errors.pop_front() {
            return refuse(error);
        }
        let key = req.split_key;
        let inside = shard.start < key && (shard.end.is_empty() || key < shard.end);
        if !inside {
            let message = if key.is_empty() {
                "fake: holds 0 key(s); too few to pick a split key: give one (--at KEY)"
            } else {
                "fake: split key is not strictly inside the shard"
            };
            return refuse(Error {
                message: message.into(),
                kind: Some(error::Kind::InvalidArgument(InvalidArgument {})),
            });
        }
        let new_id = world.shards.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        world.split(&key, new_id);
        let described = world.described();
        let find = |id| described.iter().find(|s| s.id == id).cloned();
        Ok(Response::new(SplitShardResponse {
            error: None,
            left: find(shard.id),
            right: find(new_id),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let world = self.enter("status")?;
        let shards = world
            .described()
            .into_iter()
            .map(|s| ShardStatus {
                role: if s.leader_id == Some(self.id) {
                    "leader"
                } else {
                    "follower"
                }
                .into(),
                leader_id: s.leader_id,
                shard: Some(s),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(StatusResponse {
            node_id: self.id,
            addr: world.addr(self.id),
            shards,
            pd: None,
            now_ms: 0,
        }))
    }
}

/// Starts three nodes hosting one shard (id 1, whole key space) led by
/// node 1, and returns the shared world.
pub async fn start() -> Shared {
    let mut incomings = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        addrs.push(incoming.local_addr().expect("local addr").to_string());
        incomings.push(incoming);
    }
    let replicas = (1..=3)
        .map(|n| Replica {
            node_id: n,
            addr: addrs[n as usize - 1].clone(),
            voter: true,
            replica_id: n,
        })
        .collect();
    let world = World {
        shards: vec![ShardDescriptor {
            id: 1,
            epoch: Some(Epoch {
                version: 1,
                conf_ver: 1,
            }),
            replicas,
            ..Default::default()
        }],
        leaders: HashMap::from([(1, 1)]),
        addrs,
        page_cap: 1000,
        ..Default::default()
    };
    let world = Arc::new(Mutex::new(world));
    for (i, incoming) in incomings.into_iter().enumerate() {
        let node = Node {
            id: i as u64 + 1,
            world: world.clone(),
        };
        let kv = KvServer::new(node.clone());
        let server = tonic::transport::Server::builder()
            .add_service(kv)
            .add_service(AdminServer::new(node))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
    }
    world
}
