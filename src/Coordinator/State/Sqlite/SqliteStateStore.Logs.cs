using System.Globalization;
using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.State.Sqlite;

/// <summary>Trial logs: one row per line, numbered on from the trial's highest seq and trimmed in the same transaction.</summary>
public sealed partial class SqliteStateStore
{
    /// <inheritdoc />
    public Task<LogAppendResult> AppendTrialLogAsync(string trialId, long fencingToken, IReadOnlyList<TrialLogLine> lines, int keep, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        ArgumentNullException.ThrowIfNull(lines);
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        return WriteAsync(async (db, token) =>
        {
            using var tx = db.BeginTransaction();
            using (var current = Command(db, tx, "SELECT fencing_token FROM trials WHERE id = @id;"))
            {
                current.Parameters.AddWithValue("@id", trialId);
                var stored = await current.ExecuteScalarAsync(token).ConfigureAwait(false);
                if (stored is null) return LogAppendResult.UnknownTrial;
                if ((long)stored != fencingToken) return LogAppendResult.StaleToken;
            }
            long last;
            using (var max = Command(db, tx, "SELECT COALESCE(MAX(seq), 0) FROM trial_logs WHERE trial_id = @id;"))
            {
                max.Parameters.AddWithValue("@id", trialId);
                last = (long)(await max.ExecuteScalarAsync(token).ConfigureAwait(false))!;
            }
            using (var insert = Command(db, tx, "INSERT INTO trial_logs (trial_id, seq, time, text) VALUES (@id, @seq, @time, @text);"))
            {
                insert.Parameters.AddWithValue("@id", trialId);
                var seq = insert.Parameters.Add("@seq", Microsoft.Data.Sqlite.SqliteType.Integer);
                var time = insert.Parameters.Add("@time", Microsoft.Data.Sqlite.SqliteType.Text);
                var text = insert.Parameters.Add("@text", Microsoft.Data.Sqlite.SqliteType.Text);
                foreach (var line in lines)
                {
                    seq.Value = ++last;
                    time.Value = line.Time.ToString("O", CultureInfo.InvariantCulture);
                    text.Value = line.Text;
                    await insert.ExecuteNonQueryAsync(token).ConfigureAwait(false);
                }
            }
            using (var trim = Command(db, tx, "DELETE FROM trial_logs WHERE trial_id = @id AND seq <= @below;"))
            {
                trim.Parameters.AddWithValue("@id", trialId);
                trim.Parameters.AddWithValue("@below", last - keep);
                await trim.ExecuteNonQueryAsync(token).ConfigureAwait(false);
            }
            tx.Commit();
            return LogAppendResult.Appended;
        }, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TrialLogLine>> GetTrialLogAsync(string trialId, long afterSeq, int limit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        return ReadAsync("SELECT seq, time, text FROM trial_logs WHERE trial_id = @id AND seq > @after ORDER BY seq LIMIT @limit;", q =>
        {
            q.Parameters.AddWithValue("@id", trialId);
            q.Parameters.AddWithValue("@after", afterSeq);
            q.Parameters.AddWithValue("@limit", limit);
        }, async (reader, token) =>
        {
            var lines = new List<TrialLogLine>();
            while (await reader.ReadAsync(token).ConfigureAwait(false))
            {
                lines.Add(new TrialLogLine
                {
                    Seq = reader.GetInt64(0),
                    Time = DateTimeOffset.Parse(reader.GetString(1), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
                    Text = reader.GetString(2),
                });
            }
            return (IReadOnlyList<TrialLogLine>)lines;
        }, ct);
    }
}
