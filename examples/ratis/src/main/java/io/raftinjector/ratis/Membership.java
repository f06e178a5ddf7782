package io.raftinjector.ratis;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.ratis.client.RaftClient;
import org.apache.ratis.protocol.RaftClientReply;
import org.apache.ratis.protocol.RaftPeer;
import org.apache.ratis.protocol.RaftPeerId;
import org.apache.ratis.protocol.SetConfigurationRequest;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The two URLs raft-injector's helper calls, built on Ratis' own configuration change
 * ({@code setConfiguration}):
 *
 * <ul>
 *   <li>join (init container of a pod beyond the bootstrap set): answers 200 when the peer
 *       is already in the configuration, else 202 and adds it in the background. Ratis
 *       catches a new peer up before it commits the new configuration, and the peer's
 *       server only starts after the init container ends, so the addition is retried here
 *       every half second until the peer answers (at most {@link #JOIN_DEADLINE_MS}).
 *   <li>leave (preStop of a pod being scaled away): removes the peer and answers 200, 404
 *       when it is not in the configuration, or 503 when the change could not be made in
 *       time (the helper calls again, here or on another peer).
 * </ul>
 */
final class Membership {
  private static final Logger LOG = LoggerFactory.getLogger(Membership.class);
  static final long JOIN_DEADLINE_MS = TimeUnit.MINUTES.toMillis(5);
  /** Below the helper's 3 s per call, so a slow change answers 503 instead of a timeout. */
  static final long LEAVE_BUDGET_MS = 2_500;

  private final Node node;
  /** Peers accepted by join and not yet in the configuration, with their deadlines. */
  private final Map<RaftPeerId, Pending> pending = new ConcurrentHashMap<>();
  private final ScheduledExecutorService joiner = Executors.newSingleThreadScheduledExecutor(r -> {
    final Thread thread = new Thread(r, "join");
    thread.setDaemon(true);
    return thread;
  });

  private record Pending(RaftPeer peer, long acceptedAt, long deadline) {}

  Membership(Node node) {
    this.node = node;
    joiner.scheduleWithFixedDelay(this::addPending, 500, 500, TimeUnit.MILLISECONDS);
  }

  record Answer(int status, String body) {}

  Answer join(String id, String address) {
    if (id == null || id.isEmpty() || address == null || address.isEmpty()) {
      return new Answer(400, "join needs the query parameters id and address\n");
    }
    if (node.currentPeers().stream().anyMatch(p -> p.getId().toString().equals(id))) {
      LOG.info("join {} ({}): already in the configuration", id, address);
      return new Answer(200, id + " is already a member\n");
    }
    final RaftPeer peer = RaftPeer.newBuilder().setId(id).setAddress(address).build();
    final long now = System.currentTimeMillis();
    if (pending.putIfAbsent(peer.getId(), new Pending(peer, now, now + JOIN_DEADLINE_MS)) == null) {
      LOG.info("join {} ({}): accepted; adding it once its server answers", id, address);
    } else {
      LOG.info("join {} ({}): already being added", id, address);
    }
    return new Answer(202, id + " is being added\n");
  }

  /**
   * One pass over the accepted joins, one configuration change at a time (Ratis refuses a
   * second while one is in progress). An attempt fails within about a second while the new
   * server is not up yet (Ratis' staging timeout), so the next pass tries again.
   */
  private void addPending() {
    for (Pending join : List.copyOf(pending.values())) {
      final RaftPeer peer = join.peer();
      final long now = System.currentTimeMillis();
      if (node.currentPeers().stream().anyMatch(p -> p.getId().equals(peer.getId()))) {
        LOG.info("join {}: in the configuration, {} ms after the join call", peer.getId(), now - join.acceptedAt());
        pending.remove(peer.getId());
        continue;
      }
      if (now > join.deadline()) {
        LOG.warn("join {}: gave up after {} ms; call the join URL again to retry", peer.getId(), JOIN_DEADLINE_MS);
        pending.remove(peer.getId());
        continue;
      }
      String failure;
      try (RaftClient client = node.adminClient()) {
        final RaftClientReply reply = client.admin().setConfiguration(
            SetConfigurationRequest.Arguments.newBuilder()
                .setServersInNewConf(List.of(peer))
                .setMode(SetConfigurationRequest.Mode.ADD)
                .build());
        if (reply.isSuccess()) {
          LOG.info("join {}: added by setConfiguration(ADD), {} ms after the join call", peer.getId(),
              System.currentTimeMillis() - join.acceptedAt());
          pending.remove(peer.getId());
          continue;
        }
        failure = String.valueOf(reply.getException());
      } catch (IOException | RuntimeException e) {
        failure = e.toString();
      }
      LOG.debug("join {}: not added yet ({})", peer.getId(), failure);
    }
  }

  Answer leave(String id) {
    if (id == null || id.isEmpty()) {
      return new Answer(400, "leave needs the query parameter id\n");
    }
    final long deadline = System.currentTimeMillis() + LEAVE_BUDGET_MS;
    final RaftPeerId leaving = RaftPeerId.valueOf(id);
    boolean removedHere = false;
    String last = "no attempt";
    while (System.currentTimeMillis() < deadline) {
      final List<RaftPeer> current = node.currentPeers();
      if (current.stream().noneMatch(p -> p.getId().equals(leaving))) {
        if (removedHere) {
          return new Answer(200, id + " removed\n");
        }
        LOG.info("leave {}: not in the configuration", id);
        return new Answer(404, id + " is not a member\n");
      }
      final List<RaftPeer> remaining =
          current.stream().filter(p -> !p.getId().equals(leaving)).collect(Collectors.toList());
      try (RaftClient client = node.adminClient()) {
        // Compare-and-set: a configuration that changed since it was read (another join or
        // leave) is refused, and the next round reads it again.
        final RaftClientReply reply = client.admin().setConfiguration(
            SetConfigurationRequest.Arguments.newBuilder()
                .setServersInCurrentConf(current)
                .setServersInNewConf(remaining)
                .setMode(SetConfigurationRequest.Mode.COMPARE_AND_SET)
                .build());
        if (reply.isSuccess()) {
          LOG.info("leave {}: removed by setConfiguration; {} peers remain", id, remaining.size());
          removedHere = true;
          continue;
        }
        last = String.valueOf(reply.getException());
      } catch (IOException | RuntimeException e) {
        last = e.toString();
      }
      LOG.info("leave {}: not removed yet ({})", id, last);
      sleep(200);
    }
    return removedHere
        ? new Answer(200, id + " removed\n")
        : new Answer(503, "could not remove " + id + " in time: " + last + "\n");
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    }
  }

  /** What this class needs from the running server. */
  interface Node {
    /** The voting peers of the configuration this server knows now. */
    List<RaftPeer> currentPeers();

    /** A client for the group as this server knows it now, that gives up after a few tries. */
    RaftClient adminClient();
  }
}
