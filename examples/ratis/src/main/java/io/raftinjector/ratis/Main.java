package io.raftinjector.ratis;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import org.apache.ratis.client.RaftClient;
import org.apache.ratis.conf.RaftProperties;
import org.apache.ratis.grpc.GrpcConfigKeys;
import org.apache.ratis.protocol.Message;
import org.apache.ratis.protocol.RaftClientReply;
import org.apache.ratis.protocol.RaftGroup;
import org.apache.ratis.protocol.RaftGroupId;
import org.apache.ratis.protocol.RaftPeer;
import org.apache.ratis.protocol.RaftPeerId;
import org.apache.ratis.retry.RetryPolicies;
import org.apache.ratis.server.RaftServer;
import org.apache.ratis.server.RaftServerConfigKeys;
import org.apache.ratis.server.storage.RaftStorage;
import org.apache.ratis.util.TimeDuration;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A replicated key-value store on Apache Ratis whose Raft group comes only from the env
 * vars raft-injector injects: the group id from {@code RAFT_GROUP_ID}, the peers from
 * {@code RAFT_PEERS} and this server's id from {@code POD_NAME}. No entrypoint script and
 * no peer list in the manifest. HTTP on {@code HTTP_PORT} (default 8080):
 *
 * <pre>
 * PUT  /kv/{key}     body = value; replicated through the log
 * GET  /kv/{key}     linearizable read (ReadIndex)
 * GET  /raft/group   {"groupId", "peers": [{"id", "address"}], "leader", "role"}
 * GET  /raft/members {"members": [{"id", "address", "voter"}], "leader"}: raft-injector's members URL
 * GET  /ready        200 once this server is in the configuration and knows a leader
 * POST /raft/join?id=&address=   raft-injector's join URL
 * POST /raft/leave?id=           raft-injector's leave URL
 * </pre>
 */
public final class Main implements Membership.Node {
  private static final Logger LOG = LoggerFactory.getLogger(Main.class);

  private final RaftGroupId groupId;
  private final RaftGroup bootstrapGroup;
  private final RaftServer server;
  private final RaftClient kv;
  private final Membership membership;

  private Main(RaftPeerId id, RaftGroup group, int raftPort, File storage) throws IOException {
    this.groupId = group.getGroupId();
    this.bootstrapGroup = group;
    final RaftProperties properties = new RaftProperties();
    RaftServerConfigKeys.setStorageDir(properties, List.of(storage));
    RaftServerConfigKeys.Read.setOption(properties, RaftServerConfigKeys.Read.Option.LINEARIZABLE);
    GrpcConfigKeys.Server.setPort(properties, raftPort);
    // A member beyond the bootstrap set is not in RAFT_PEERS: it starts with the group id
    // alone, and Ratis keeps it idle until the leader adds it (the join URL). So does a
    // bootstrap member that the running group had removed (a scale-down below the bootstrap
    // size) and that the join URL has just added back: raft-injector's join container then
    // leaves /raft-injector/joined. Starting it with RAFT_PEERS instead could let two such
    // members elect each other in a group of their own. Once a member has a log, the
    // configuration in the log wins over what is given here.
    final boolean joined = new File(System.getenv().getOrDefault("RAFT_INJECTOR_HELPER_DIR", "/raft-injector"),
        "joined").exists();
    final boolean bootstrap = group.getPeer(id) != null && !joined;
    this.server = RaftServer.newBuilder()
        .setServerId(id)
        .setGroup(bootstrap ? group : RaftGroup.valueOf(group.getGroupId()))
        .setProperties(properties)
        .setStateMachine(new KvStateMachine())
        .setOption(RaftStorage.StartupOption.RECOVER)
        .build();
    this.kv = newClient(group, 20);
    this.membership = new Membership(this);
  }

  private static RaftClient newClient(RaftGroup group, int attempts) {
    return RaftClient.newBuilder()
        .setProperties(new RaftProperties())
        .setRaftGroup(group)
        .setRetryPolicy(RetryPolicies.retryUpToMaximumCountWithFixedSleep(
            attempts, TimeDuration.valueOf(200, TimeUnit.MILLISECONDS)))
        .build();
  }

  @Override
  public List<RaftPeer> currentPeers() {
    try {
      return new ArrayList<>(server.getDivision(groupId).getRaftConf().getCurrentPeers());
    } catch (IOException e) {
      return List.of();
    }
  }

  @Override
  public RaftClient adminClient() {
    final List<RaftPeer> peers = currentPeers();
    return newClient(peers.isEmpty() ? bootstrapGroup : RaftGroup.valueOf(groupId, peers), 3);
  }

  /** {@code RAFT_PEERS} is {@code host:port,...}; a peer's id is its host's first label, the pod name. */
  static List<RaftPeer> peersOf(String raftPeers) {
    return Arrays.stream(raftPeers.split(","))
        .map(String::trim)
        .filter(s -> !s.isEmpty())
        .map(address -> RaftPeer.newBuilder()
            .setId(address.substring(0, address.indexOf('.') > 0 ? address.indexOf('.') : address.lastIndexOf(':')))
            .setAddress(address)
            .build())
        .collect(Collectors.toList());
  }

  private static String need(String name) {
    final String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      System.err.println("env var " + name + " is not set; this app expects the env vars raft-injector "
          + "injects (is the namespace labelled raft-injector.io/injection=enabled and the StatefulSet "
          + "labelled raft-injector.io/raft=true?)");
      System.exit(2);
    }
    return value;
  }

  public static void main(String[] args) {
    try {
      run();
    } catch (Exception | Error e) {
      // Ratis' gRPC threads would keep a half-started JVM alive; exit so kubelet restarts it.
      LOG.error("could not start: {}", e.toString(), e);
      System.exit(1);
    }
  }

  private static void run() throws IOException {
    final RaftPeerId id = RaftPeerId.valueOf(need("POD_NAME"));
    final RaftGroup group = RaftGroup.valueOf(
        RaftGroupId.valueOf(UUID.fromString(need("RAFT_GROUP_ID"))), peersOf(need("RAFT_PEERS")));
    final int raftPort = Integer.parseInt(need("RAFT_PORT"));
    final int httpPort = Integer.parseInt(System.getenv().getOrDefault("HTTP_PORT", "8080"));
    final File storage = new File(System.getenv().getOrDefault("DATA_DIR", "/data"));
    LOG.info("starting {} in group {} with bootstrap peers {}, raft port {}, http port {}, storage {}",
        id, group.getGroupId().getUuid(), group.getPeers(), raftPort, httpPort, storage);

    final Main app = new Main(id, group, raftPort, storage);
    app.server.start();
    final HttpServer http = HttpServer.create(new InetSocketAddress(httpPort), 64);
    http.setExecutor(Executors.newFixedThreadPool(8));
    http.createContext("/", app::handle);
    http.start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      http.stop(0);
      try {
        app.kv.close();
        app.server.close();
      } catch (IOException e) {
        LOG.warn("closing: {}", e.toString());
      }
    }));
    LOG.info("serving HTTP on {}", httpPort);
  }

  private void handle(HttpExchange exchange) throws IOException {
    final String method = exchange.getRequestMethod();
    final String path = exchange.getRequestURI().getPath();
    final Map<String, String> query = queryOf(exchange.getRequestURI().getRawQuery());
    try (exchange) {
      if (path.startsWith("/kv/") && path.length() > 4) {
        final String key = path.substring(4);
        switch (method) {
          case "PUT" -> {
            final String value = new String(readAll(exchange.getRequestBody()), StandardCharsets.UTF_8);
            final RaftClientReply reply = kv.io().send(KvStateMachine.put(key, value));
            reply(exchange, reply.isSuccess() ? 204 : 503, reply.isSuccess() ? "" : reply.getException() + "\n");
          }
          case "GET" -> {
            final RaftClientReply reply = kv.io().sendReadOnly(KvStateMachine.get(key));
            if (!reply.isSuccess()) {
              reply(exchange, 503, reply.getException() + "\n");
              return;
            }
            final String value = reply.getMessage().getContent().toString(StandardCharsets.UTF_8);
            if (value.equals(KvStateMachine.ABSENT)) {
              reply(exchange, 404, "no key " + key + "\n");
            } else {
              reply(exchange, 200, value);
            }
          }
          default -> reply(exchange, 405, "use GET or PUT\n");
        }
      } else if (path.equals("/raft/group") && method.equals("GET")) {
        reply(exchange, 200, groupJson());
      } else if (path.equals("/raft/members") && method.equals("GET")) {
        reply(exchange, 200, membersJson());
      } else if (path.equals("/ready") && method.equals("GET")) {
        final boolean member = currentPeers().stream().anyMatch(p -> p.getId().equals(server.getId()));
        final RaftPeerId leader = server.getDivision(groupId).getInfo().getLeaderId();
        final boolean ready = member && leader != null;
        reply(exchange, ready ? 200 : 503, ready ? "ready\n"
            : member ? "no leader known yet\n" : "not in the configuration yet\n");
      } else if (path.equals("/raft/join") && method.equals("POST")) {
        final Membership.Answer answer = membership.join(query.get("id"), query.get("address"));
        reply(exchange, answer.status(), answer.body());
      } else if (path.equals("/raft/leave") && method.equals("POST")) {
        final Membership.Answer answer = membership.leave(query.get("id"));
        reply(exchange, answer.status(), answer.body());
      } else {
        reply(exchange, 404, "no route " + method + " " + path + "\n");
      }
    } catch (IOException | RuntimeException e) {
      LOG.warn("{} {}: {}", method, path, e.toString());
      reply(exchange, 503, e + "\n");
    }
  }

  private String groupJson() throws IOException {
    final RaftServer.Division division = server.getDivision(groupId);
    final RaftPeerId leader = division.getInfo().getLeaderId();
    final String peers = currentPeers().stream()
        .sorted((a, b) -> a.getId().toString().compareTo(b.getId().toString()))
        .map(p -> "{\"id\": " + quote(p.getId().toString()) + ", \"address\": " + quote(p.getAddress()) + "}")
        .collect(Collectors.joining(", "));
    return "{\"groupId\": " + quote(groupId.getUuid().toString())
        + ", \"peers\": [" + peers + "]"
        + ", \"leader\": " + (leader == null ? "null" : quote(leader.toString()))
        + ", \"role\": " + quote(division.getInfo().getCurrentRole().name())
        + ", \"id\": " + quote(server.getId().toString()) + "}\n";
  }

  /** The member list in the shape raft-injector's members URL documents. */
  private String membersJson() throws IOException {
    final RaftPeerId leader = server.getDivision(groupId).getInfo().getLeaderId();
    final String members = currentPeers().stream()
        .sorted((a, b) -> a.getId().toString().compareTo(b.getId().toString()))
        .map(p -> "{\"id\": " + quote(p.getId().toString()) + ", \"address\": " + quote(p.getAddress())
            + ", \"voter\": true}")
        .collect(Collectors.joining(", "));
    return "{\"members\": [" + members + "], \"leader\": "
        + (leader == null ? "null" : quote(leader.toString())) + "}\n";
  }

  private static String quote(String text) {
    final StringBuilder out = new StringBuilder("\"");
    for (char c : text.toCharArray()) {
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        default -> {
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    return out.append('"').toString();
  }

  private static Map<String, String> queryOf(String raw) {
    final Map<String, String> query = new HashMap<>();
    if (raw == null) {
      return query;
    }
    for (String pair : raw.split("&")) {
      final int eq = pair.indexOf('=');
      if (eq > 0) {
        query.put(URLDecoder.decode(pair.substring(0, eq), StandardCharsets.UTF_8),
            URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8));
      }
    }
    return query;
  }

  private static byte[] readAll(InputStream in) throws IOException {
    return in.readAllBytes();
  }

  private static void reply(HttpExchange exchange, int status, String body) throws IOException {
    final byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    exchange.getResponseHeaders().set("Content-Type",
        body.startsWith("{") ? "application/json" : "text/plain; charset=utf-8");
    exchange.sendResponseHeaders(status, bytes.length == 0 ? -1 : bytes.length);
    if (bytes.length > 0) {
      try (OutputStream out = exchange.getResponseBody()) {
        out.write(bytes);
      }
    }
  }
}
