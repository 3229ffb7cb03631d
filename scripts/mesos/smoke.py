#!/usr/bin/env python3
"""Smoke test of a local Mesos cluster (mesos_start in scripts/lib.sh) through the v1
scheduler HTTP API, JSON flavour:

    scripts/mesos/smoke.py http://127.0.0.1:PORT

1. A framework with GPU_RESOURCES (and MULTI_ROLE, TASK_KILLING_STATE) gets an offer with
   gpus; it launches a shell task on 1 gpu + 0.5 cpu + 128 mem that prints to stdout and
   stderr, reads a variable from CommandInfo.environment and traps SIGTERM; after
   TASK_RUNNING it kills the task with a 2 s grace period (the task's own kill_policy says
   30 s): TASK_KILLING, then TASK_KILLED about 2 s later (the trap outlives SIGTERM).
2. `exit 3` run without a shell (shell=false, arguments): TASK_FAILED, "status 3".
3. A command that cannot be executed: TASK_FAILED saying why.
4. The first task's sandbox stdout/stderr hold what it printed (found through the agent's
   /state, read from disk).
5. Explicit reconciliation of the running task answers without a uuid; every update with
   a uuid is acknowledged, none without one.
6. TEARDOWN; then a framework WITHOUT GPU_RESOURCES gets no offer within 5 s (the master
   filters GPU agents out for it).

Exits 0 when every check passed. Standard library only.
"""
import http.client
import json
import os
import queue
import sys
import threading
import time
import urllib.parse
import urllib.request

TIMEOUT = 30.0


class Failure(Exception):
    pass


class Scheduler:
    def __init__(self, master, name, capabilities):
        url = urllib.parse.urlsplit(master)
        self.host, self.port = url.hostname, url.port or 5050
        self.name = name
        self.capabilities = capabilities
        self.events = queue.Queue()
        self.framework_id = None
        self.stream_id = None
        self.acked = 0
        self.updates = []  # every status seen, in order

    def subscribe(self):
        info = {"user": "root", "name": self.name, "roles": ["fundus-smoke"],
                "checkpoint": True, "failover_timeout": 0,
                "capabilities": [{"type": c} for c in ["MULTI_ROLE"] + self.capabilities]}
        body = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}})
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        self.conn.request("POST", "/api/v1/scheduler", body,
                          {"Content-Type": "application/json", "Accept": "application/json"})
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise Failure(f"SUBSCRIBE: {resp.status} {resp.read()!r}")
        self.stream_id = resp.getheader("Mesos-Stream-Id")
        self.conn.sock.settimeout(None)
        threading.Thread(target=self._read, args=(resp,), daemon=True).start()
        event = self.wait_for(lambda e: e["type"] == "SUBSCRIBED", "SUBSCRIBED")
        self.framework_id = event["subscribed"]["framework_id"]["value"]
        return self

    def _read(self, resp):
        buf = b""
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while True:  # RecordIO, by byte count
                    nl = buf.find(b"\n")
                    if nl < 0 or len(buf) < nl + 1 + int(buf[:nl]):
                        break
                    size = int(buf[:nl])
                    self.events.put(json.loads(buf[nl + 1:nl + 1 + size]))
                    buf = buf[nl + 1 + size:]
        except Exception:  # noqa: BLE001 - closed under its feet (teardown), or broken
            pass
        self.events.put({"type": "_CLOSED"})

    def call(self, kind, **fields):
        body = {"type": kind, "framework_id": {"value": self.framework_id}}
        body.update(fields)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/api/v1/scheduler", json.dumps(body),
                         {"Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id})
            resp = conn.getresponse()
            text = resp.read()
        finally:
            conn.close()
        if resp.status != 202:
            raise Failure(f"{kind}: {resp.status} {text!r}")

    def next_event(self, deadline):
        """The next event, acknowledging updates (only those with a uuid) on the way."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            event = self.events.get(timeout=left)
        except queue.Empty:
            return None
        if event["type"] == "_CLOSED":
            raise Failure("the scheduler event stream closed")
        if event["type"] == "ERROR":
            raise Failure(f"ERROR event: {event.get('error', {}).get('message')}")
        if event["type"] == "UPDATE":
            status = event["update"]["status"]
            self.updates.append(status)
            print(f"  update {status['task_id']['value']}: {status['state']}"
                  f" source={status.get('source')} uuid={'yes' if 'uuid' in status else 'no'}"
                  f"{' message=' + repr(status['message']) if 'message' in status else ''}")
            if "uuid" in status:
                self.call("ACKNOWLEDGE", acknowledge={
                    "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]})
                self.acked += 1
        return event

    def wait_for(self, match, what, timeout=TIMEOUT, keep=None):
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(deadline)
            if event is None:
                raise Failure(f"timed out waiting for {what}")
            if match(event):
                return event
            if keep is not None:
                keep(event)

    def state_of(self, task_id, states, timeout=TIMEOUT):
        return self.wait_for(
            lambda e: e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"] == task_id
            and e["update"]["status"]["state"] in states,
            f"{task_id} to reach {'/'.join(states)}", timeout)["update"]["status"]

    def offer_with_gpu(self):
        event = self.wait_for(
            lambda e: e["type"] == "OFFERS" and any(
                r["name"] == "gpus" and r.get("scalar", {}).get("value", 0) >= 1
                for o in e["offers"]["offers"] for r in o["resources"]),
            "an offer with gpus")
        return next(o for o in event["offers"]["offers"]
                    if any(r["name"] == "gpus" for r in o["resources"]))

    def launch(self, offer, task_id, command, gpus=0, kill_grace=None):
        role = offer["allocation_info"]["role"]

        def scalar(name, value):
            return {"name": name, "type": "SCALAR", "scalar": {"value": value},
                    "allocation_info": {"role": role}}
        resources = [scalar("cpus", 0.5), scalar("mem", 128)]
        if gpus:
            resources.append(scalar("gpus", gpus))
        task = {"name": task_id, "task_id": {"value": task_id}, "agent_id": offer["agent_id"],
                "resources": resources, "command": command}
        if kill_grace is not None:
            task["kill_policy"] = {"grace_period": {"nanoseconds": int(kill_grace * 1e9)}}
        self.call("ACCEPT", accept={
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
            "filters": {"refuse_seconds": 1}})

    def teardown(self):
        self.call("TEARDOWN")
        self.conn.close()


def agent_state(master):
    with urllib.request.urlopen(master.rstrip("/") + "/slave(1)/state", timeout=TIMEOUT) as r:
        return json.load(r)


def sandbox_of(master, framework_id, executor_id):
    for _ in range(50):
        state = agent_state(master)
        for fw in state.get("frameworks", []) + state.get("completed_frameworks", []):
            if fw["id"] != framework_id:
                continue
            for ex in fw.get("executors", []) + fw.get("completed_executors", []):
                if ex["id"] == executor_id:
                    return ex["directory"]
        time.sleep(0.2)
    raise Failure(f"the agent does not know executor {executor_id}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    master = sys.argv[1]
    checks = []

    def check(ok, what):
        checks.append((bool(ok), what))
        print(("PASS " if ok else "FAIL ") + what, flush=True)

    try:
        print("framework with GPU_RESOURCES")
        fw = Scheduler(master, "fundus-smoke-gpu", ["GPU_RESOURCES", "TASK_KILLING_STATE"]).subscribe()
        check(fw.framework_id, f"subscribed as {fw.framework_id}")

        offer = fw.offer_with_gpu()
        check(True, f"offer {offer['id']['value']} carries gpus")
        script = ("trap 'echo got-sigterm' TERM; echo started; echo to-stderr >&2; "
                  "echo \"env=$FUNDUS_SMOKE\"; while :; do sleep 0.1; done")
        fw.launch(offer, "smoke-kill", {
            "shell": True, "value": script,
            "environment": {"variables": [{"name": "FUNDUS_SMOKE", "value": "from-commandinfo"}]}},
            gpus=1, kill_grace=30)
        fw.state_of("smoke-kill", ["TASK_RUNNING"])
        check(True, "smoke-kill is TASK_RUNNING")
        fw.call("RECONCILE", reconcile={"tasks": [{"task_id": {"value": "smoke-kill"},
                                                   "agent_id": offer["agent_id"]}]})
        rec = fw.wait_for(lambda e: e["type"] == "UPDATE"
                          and e["update"]["status"].get("reason") == "REASON_RECONCILIATION",
                          "the reconciliation answer")["update"]["status"]
        check(rec["state"] == "TASK_RUNNING" and "uuid" not in rec,
              f"reconciliation answers {rec['state']} without a uuid")
        time.sleep(0.5)  # let the trap be installed and the output be written
        started = time.monotonic()
        fw.call("KILL", kill={"task_id": {"value": "smoke-kill"}, "agent_id": offer["agent_id"],
                              "kill_policy": {"grace_period": {"nanoseconds": 2_000_000_000}}})
        killing = fw.state_of("smoke-kill", ["TASK_KILLING", "TASK_KILLED", "TASK_FAILED"])
        check(killing["state"] == "TASK_KILLING", "TASK_KILLING first (TASK_KILLING_STATE)")
        killed = killing if killing["state"] != "TASK_KILLING" else \
            fw.state_of("smoke-kill", ["TASK_KILLED", "TASK_FAILED", "TASK_FINISHED"])
        took = time.monotonic() - started
        check(killed["state"] == "TASK_KILLED", f"then {killed['state']}: {killed.get('message')}")
        check(1.8 <= took <= 8, f"SIGKILL after the KILL's 2 s grace period, not the task's 30 s ({took:.1f} s)")

        offer = fw.offer_with_gpu()
        fw.launch(offer, "smoke-exit3", {"shell": False, "value": "/bin/sh",
                                         "arguments": ["sh", "-c", "exit 3"]})
        failed = fw.state_of("smoke-exit3", ["TASK_FAILED", "TASK_FINISHED", "TASK_KILLED"])
        check(failed["state"] == "TASK_FAILED" and "status 3" in failed.get("message", ""),
              f"shell=false exit 3: {failed['state']}: {failed.get('message')}")

        offer = fw.offer_with_gpu()
        fw.launch(offer, "smoke-noexec", {"shell": False, "value": "/nonexistent/fundus-smoke",
                                          "arguments": ["fundus-smoke"]})
        noexec = fw.state_of("smoke-noexec", ["TASK_FAILED", "TASK_FINISHED", "TASK_KILLED"])
        check(noexec["state"] == "TASK_FAILED" and noexec.get("message"),
              f"unexecutable command: {noexec['state']}: {noexec.get('message')}")

        sandbox = sandbox_of(master, fw.framework_id, "smoke-kill")
        with open(os.path.join(sandbox, "stdout"), errors="replace") as f:
            out = f.read()
        with open(os.path.join(sandbox, "stderr"), errors="replace") as f:
            err = f.read()
        check("started" in out, f"sandbox stdout has 'started' ({sandbox})")
        check("env=from-commandinfo" in out, "the task saw CommandInfo.environment")
        check("got-sigterm" in out, "the task got SIGTERM before SIGKILL")
        check("to-stderr" in err, "sandbox stderr has 'to-stderr'")

        with_uuid = sum(1 for s in fw.updates if "uuid" in s)
        check(fw.acked == with_uuid and with_uuid < len(fw.updates),
              f"acknowledged {fw.acked} updates with a uuid, none of the {len(fw.updates) - with_uuid} without")
        fw.teardown()
        check(True, "TEARDOWN")

        print("framework without GPU_RESOURCES")
        plain = Scheduler(master, "fundus-smoke-nogpu", []).subscribe()
        deadline = time.monotonic() + 5
        offers = 0
        while True:
            event = plain.next_event(deadline)
            if event is None:
                break
            if event["type"] == "OFFERS":
                offers += len(event["offers"]["offers"])
        check(offers == 0, f"no offers within 5 s without GPU_RESOURCES (got {offers})")
        plain.teardown()
    except (Failure, OSError, KeyError, ValueError) as e:
        check(False, f"{type(e).__name__}: {e}")

    failed = [what for ok, what in checks if not ok]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
