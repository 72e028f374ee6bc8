"""The platform on a real multi-node Ray cluster on this machine: a head and two worker nodes,
each a raylet of its own (`ray.cluster_utils.Cluster`), with the shared state a cluster needs on
real servers: PostgreSQL for the metadata (`metadata_url`), a Milvus server behind two memory
replicas, and an object store (S3's API, moto's server) as the `storage_path` every node reads
and writes. Chat engine replicas spread over the worker nodes, a training job's two workers run
on different nodes and publish its checkpoints to the object store, from which an engine on
another node serves its adapter, a batch job's Ray Data actors run on other nodes than its
driver and its output dataset goes to the object store too, and a worker
node killed under load costs its requests in flight a 503 (never a hang) while Serve replaces
its replicas on the node that is left.

These run after every other test: they stop the shared single-node cluster first.
"""

from __future__ import annotations

import concurrent.futures
import copy
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llamaray.config import ModelConfig
from llamaray.serve.engine_deployment import deployment_name
from tests.servers import fresh_database, s3_storage_path

from .conftest import MODEL_ID, LocalCluster, free_port, platform_args, prepare_environment
from .test_memory_banks_http import ODD_IDS, doc, query
from .test_post_training_http import llama_stack_answer, sft_request, wait_until_final

pytestmark = [pytest.mark.multinode, pytest.mark.slow]

APP = "llamaray"
ENGINE = deployment_name(ModelConfig(model_id=MODEL_ID, path="-"))


@dataclass
class MultiNode:
    cluster: object  # ray.cluster_utils.Cluster
    workers: list  # its worker nodes (ray._private.node.Node)
    url: str
    storage_path: str  # an S3 URI with the endpoint's options


def multinode_args(
    models: Path, data_dir: Path, dataset_dir: Path, metadata_url: str, milvus_url: str, storage_path: str
) -> dict:
    """The test platform's config with what a cluster changes: the chat model alone, on two
    replicas; shared metadata, vectors and files; the gateway on the head; training spread over
    nodes."""
    args = copy.deepcopy(platform_args(models, data_dir, [dataset_dir]))
    (chat,) = [m for m in args["models"] if m["model_id"] == MODEL_ID]
    chat["adapters"] = {}
    chat["autoscaling_config"] = {"min_replicas": 2, "max_replicas": 2}
    args["models"] = [chat]
    args.pop("agents")  # its guards are models this platform does not serve
    args["metadata_url"] = metadata_url
    args["storage_path"] = storage_path
    args["memory"].update(milvus_uri=milvus_url, memory_replicas=2, memory_max_replicas_per_node=1, write_lease_s=5)
    args["gateway"] = {"resources": {"head": 0.01}}
    args["training"] = {"placement_strategy": "STRICT_SPREAD", "num_workers": 2}
    return args


@pytest.fixture(scope="module")
def multinode(tiny_models, dataset_dir, postgres_url, milvus_url, s3_endpoint, tmp_path_factory) -> MultiNode:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from llamaray.serve.app import build_app

    for running in list(LocalCluster.live):  # two Ray clusters do not fit on 2 cores
        running.stop()
    prepare_environment()
    # Before the nodes start: they inherit the object store's credentials from this environment.
    storage_path = s3_storage_path(s3_endpoint, "llamaray", "cluster")
    # Every node on 127.0.0.2: Ray turns a bootstrap address of 127.0.0.1 into the machine's own
    # address, where a node bound to loopback is not listening.
    node = {"node_ip_address": "127.0.0.2", "object_store_memory": 300 * 1024**2}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **node,
            # No work on the head, as Ray advises for clusters: its controller, proxy, gateway, job
            # tracker and Ray Jobs' drivers need no CPU of their own.
            "num_cpus": 0,
            "resources": {"head": 1},
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),
        },
    )
    # Each worker node: a chat engine (1 CPU), a training worker (1), an embedder (0.5) and room
    # for the engine the other node loses.
    workers = [cluster.add_node(**node, num_cpus=3) for _ in range(2)]
    ray.init(address=cluster.address, _node_ip_address="127.0.0.2", log_to_driver=False, configure_logging=False)
    http_port = free_port()
    # One proxy, on the head: every node here shares the one loopback address and its ports.
    serve.start(http_options={"host": "127.0.0.1", "port": http_port, "location": "HeadOnly"})
    args = multinode_args(
        tiny_models,
        tmp_path_factory.mktemp("multinode-data"),
        dataset_dir,
        fresh_database(postgres_url),
        milvus_url,
        storage_path,
    )
    serve.run(build_app(args), name=APP, route_prefix="/")
    url = f"http://127.0.0.1:{http_port}"
    wait_until_ready(url, 300)
    yield MultiNode(cluster, workers, url, storage_path)
    ray.shutdown()  # and no serve.shutdown(): its controller waits 30 s for the dead node's replicas
    cluster.shutdown()


def wait_until_ready(url: str, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if httpx.get(f"{url}/ready", timeout=10).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"the platform was not ready within {timeout_s} s")


def replica_nodes(deployment: str) -> list[str]:
    """The node ids of the deployment's live replicas."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=10_000)
    return [a.node_id for a in actors if a.class_name == f"ServeReplica:{APP}:{deployment}"]


def running_replicas(deployment: str) -> int:
    from ray import serve

    states = serve.status().applications[APP].deployments[deployment].replica_states
    return states.get("RUNNING", 0)


def test_replicas_spread_over_the_nodes(multinode):
    worker_ids = {node.node_id for node in multinode.workers}
    engines = replica_nodes(ENGINE)
    assert len(engines) == 2 and set(engines) == worker_ids, (engines, worker_ids)
    memory = replica_nodes("MemoryServer")
    assert len(memory) == 2 and len(set(memory)) == 2, memory
    (gateway,) = replica_nodes("Gateway")
    assert gateway == multinode.cluster.head_node.node_id


def test_two_memory_replicas_share_banks_through_http(multinode):
    """Writes from many clients at once reach both replicas (Serve routes between them): every
    document is there once, and ids of any alphabet are found, filtered and deleted."""
    with httpx.Client(base_url=multinode.url, timeout=120) as client:
        bank = {"bank_uuid": "cluster-bank", "bank_name": "c"}
        created = client.post("/memory_banks/create", params=bank, json=[doc("seed", "A note on harbours.")])
        assert created.status_code == 200, created.text

        def insert(batch: int) -> int:
            documents = [doc(f"b{batch}-{j}", f"Batch {batch} note {j} on harbours.") for j in range(3)]
            return client.post("/memory_bank/insert", params={"bank_uuid": "cluster-bank"}, json=documents).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(insert, range(8))) == {200}
        expected = {"seed"} | {f"b{i}-{j}" for i in range(8) for j in range(3)}
        found = {c["document_uuid"] for c in query(client, "cluster-bank", "harbours", top_k=100)}
        assert found == expected

        odd = [doc(uuid, f"Document {i} on the lighthouse keeper.", tag=uuid) for i, uuid in enumerate(ODD_IDS)]
        assert client.post("/memory_bank/insert", params={"bank_uuid": "cluster-bank"}, json=odd).status_code == 200
        for uuid in ODD_IDS:
            assert [c["document_uuid"] for c in query(client, "cluster-bank", "keeper", filter={"tag": uuid})] == [uuid]
        deleted = client.post("/memory_bank/delete", params={"bank_uuid": "cluster-bank"}, json=ODD_IDS)
        assert deleted.status_code == 200
        assert not [c for c in query(client, "cluster-bank", "lighthouse keeper", top_k=100) if "keeper" in c["text"]]


def test_a_training_job_runs_its_workers_on_different_nodes(multinode, datasets):
    """Two workers on two nodes; its checkpoint and Ray Train's run directory on the object
    store; its adapter served by engines that downloaded it on their own nodes."""
    from ray.util.state import list_actors

    with httpx.Client(base_url=multinode.url, timeout=120) as client:
        body = sft_request("multinode-sft", datasets["sft"], n_iters=10)
        assert client.post("/post_training/supervised_fine_tune/", json=body).status_code == 200
        status = wait_until_final(client, "multinode-sft", timeout_s=400)
        assert status["status"] == "completed", status
        artifacts = client.get("/post_training/job/artifacts", params={"job_uuid": "multinode-sft"}).json()
        (checkpoint,) = artifacts["checkpoints"]
        assert checkpoint["path"] == "s3://llamaray/cluster/jobs/multinode-sft/checkpoints/iter-10", checkpoint
        assert llama_stack_answer(client, f"{MODEL_ID}:multinode-sft")  # served from the engines' copies
        (card,) = [m for m in client.get("/v1/models").json()["data"] if m["id"] == f"{MODEL_ID}:multinode-sft"]
        assert card["root"] == checkpoint["path"]  # the object store's options (an endpoint) not shown
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=10_000)
    nodes = {a.node_id for a in workers}
    assert len(nodes) == 2 and nodes == {node.node_id for node in multinode.workers}, nodes
    stored = stored_files(multinode, "jobs/multinode-sft") + stored_files(multinode, "ray_train/multinode-sft")
    assert any(p.endswith("iter-10/adapter_config.json") for p in stored), stored
    assert any("/ray_train/multinode-sft/" in p for p in stored), stored


def stored_files(multinode: MultiNode, prefix: str) -> list[str]:
    """What the object store holds under `prefix` of the cluster's storage."""
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(multinode.storage_path)
    selector = fs.FileSelector(f"{root}/{prefix}", recursive=True, allow_not_found=True)
    return [info.path for info in filesystem.get_file_info(selector)]


def test_a_batch_job_runs_its_data_actors_on_other_nodes_than_its_driver(multinode):
    """A batch beyond the inline size runs as a Ray Job (its driver on the head, where Ray Jobs
    puts drivers) whose Ray Data actors, each with a vLLM engine, run on the worker nodes."""
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors

    prompts = [f"Prompt {i} about harbours." for i in range(40)]
    with httpx.Client(base_url=multinode.url, timeout=600) as client:
        body = {"model": MODEL_ID, "content_batch": prompts, "max_tokens": 4}
        response = client.post("/inference/batch_completion", json=body)
        assert response.status_code == 200, response.text
        assert len(response.json()) == 40
        (record,) = [d for d in stored_files(multinode, "datasets") if d.endswith(".jsonl")]
        assert (
            client.get("/datasets/get", params={"dataset_id": record.rsplit("/", 1)[-1][: -len(".jsonl")]})
            .json()["content_url"]
            .startswith("s3://llamaray/cluster/datasets/")
        )
    jobs = JobSubmissionClient(f"http://{multinode.cluster.webui_url}").list_jobs()
    (job,) = [j for j in jobs if (j.submission_id or "").startswith("batch-")]
    actors = [  # the actor pool's workers (Ray Data keeps a bookkeeping actor of its own on the head)
        a
        for a in list_actors(detail=True, limit=10_000)
        if a.job_id == job.job_id and a.class_name.startswith("MapWorker")
    ]
    assert actors and job.driver_node_id == multinode.cluster.head_node.node_id
    assert {a.node_id for a in actors} <= {node.node_id for node in multinode.workers}, actors


def test_a_worker_node_killed_under_load_is_503s_then_full_service(multinode):
    """Clients keep sending completions while a node with a chat engine dies: each request ends
    200 or 503 within its timeout, and two engines serve again within the stated time."""
    statuses: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        body = {"model": MODEL_ID, "content": "Tell me about harbours.", "max_tokens": 32}
        with httpx.Client(base_url=multinode.url, timeout=60) as client:
            while not stop.is_set():
                try:
                    statuses.append(client.post("/inference/completion", json=body).status_code)
                except httpx.HTTPError as exc:  # a hang ends here, as a timeout
                    errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(5)
    victim = multinode.workers[-1]
    assert victim.node_id in replica_nodes(ENGINE)
    killed_at = time.monotonic()
    multinode.cluster.remove_node(victim, allow_graceful=False)
    multinode.workers.remove(victim)
    survivor = multinode.workers[0].node_id

    def replaced() -> bool:  # Ray has seen the node die, and Serve has started its engine elsewhere
        return replica_nodes(ENGINE) == [survivor] * 2 and running_replicas(ENGINE) == 2

    try:
        deadline = killed_at + 300
        while time.monotonic() < deadline and not replaced():
            time.sleep(1)
        full_service_s = time.monotonic() - killed_at
        assert replaced(), f"the lost engine was not replaced within {deadline - killed_at:.0f} s"
        time.sleep(3)  # the load goes on over the new replica
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
    print(
        f"node killed: 2 engines serving again after {full_service_s:.1f} s; {len(statuses)} requests, "
        f"{statuses.count(503)} answered 503"
    )
    assert not errors, errors[:5]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) > 0
    with httpx.Client(base_url=multinode.url, timeout=60) as client:
        body = {"model": MODEL_ID, "content": "hello", "max_tokens": 4}
        assert [client.post("/inference/completion", json=body).status_code for _ in range(4)] == [200] * 4
