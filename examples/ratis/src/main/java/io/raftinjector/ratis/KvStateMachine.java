package io.raftinjector.ratis;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.ratis.proto.RaftProtos.LogEntryProto;
import org.apache.ratis.protocol.Message;
import org.apache.ratis.statemachine.TransactionContext;
import org.apache.ratis.statemachine.impl.BaseStateMachine;

/**
 * A replicated map of strings. Writes are log entries {@code put <key>\n<value>}; reads are
 * queries {@code get <key>} that answer the value, or nothing when the key is absent.
 *
 * <p>There are no snapshots: the log is never purged, so a restarted server replays it from
 * the start and a new member is caught up from the leader's log.
 */
final class KvStateMachine extends BaseStateMachine {
  static final String ABSENT = "\u0000absent";

  private final Map<String, String> values = new ConcurrentHashMap<>();

  static Message put(String key, String value) {
    return Message.valueOf("put " + key + "\n" + value);
  }

  static Message get(String key) {
    return Message.valueOf("get " + key);
  }

  @Override
  public CompletableFuture<Message> applyTransaction(TransactionContext trx) {
    final LogEntryProto entry = trx.getLogEntry();
    final String command = entry.getStateMachineLogEntry().getLogData().toString(StandardCharsets.UTF_8);
    final int newline = command.indexOf('\n');
    if (!command.startsWith("put ") || newline < 0) {
      updateLastAppliedTermIndex(entry.getTerm(), entry.getIndex());
      return CompletableFuture.failedFuture(new IllegalArgumentException("not a put: " + command));
    }
    values.put(command.substring(4, newline), command.substring(newline + 1));
    updateLastAppliedTermIndex(entry.getTerm(), entry.getIndex());
    return CompletableFuture.completedFuture(Message.valueOf("OK"));
  }

  @Override
  public CompletableFuture<Message> query(Message request) {
    final String command = request.getContent().toString(StandardCharsets.UTF_8);
    if (!command.startsWith("get ")) {
      return CompletableFuture.failedFuture(new IllegalArgumentException("not a get: " + command));
    }
    final String value = values.get(command.substring(4));
    return CompletableFuture.completedFuture(Message.valueOf(value == null ? ABSENT : value));
  }
}
