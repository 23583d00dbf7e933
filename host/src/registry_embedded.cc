// The "embedded" registry backend: one SQLite database under the data dir.
#include "registry_embedded.h"

#include <sqlite3.h>

#include <chrono>
#include <mutex>

#include "lever/host/lever_json.h"

namespace lever::host {
namespace {

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One prepared statement; finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, std::string_view s) {
    if (ok()) rc_ = sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    if (ok()) rc_ = sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() {
    if (!ok()) return rc_;
    return sqlite3_step(stmt_);
  }
  std::string Text(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string Error() const { return sqlite3_errmsg(db_); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

Status DbError(sqlite3* db, std::string_view what) {
  return Status(Code::kInternal, "registry: " + std::string(what) + ": " + sqlite3_errmsg(db));
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS environments (
  name TEXT PRIMARY KEY NOT NULL,
  description TEXT NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS services (
  env TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  private INTEGER NOT NULL,
  live_version INTEGER NOT NULL,
  next_version INTEGER NOT NULL,
  PRIMARY KEY (env, name));
CREATE TABLE IF NOT EXISTS code_versions (
  env TEXT NOT NULL,
  service TEXT NOT NULL,
  version INTEGER NOT NULL,
  lever_json TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (env, service, version));
)sql";

class EmbeddedRegistry final : public Registry {
 public:
  explicit EmbeddedRegistry(sqlite3* db) : db_(db) {}
  ~EmbeddedRegistry() override { sqlite3_close_v2(db_); }

  Status Init() {
    std::lock_guard lock(mu_);
    char* err = nullptr;
    // WAL keeps readers off the writer's back; NORMAL sync is durable across
    // a leverd crash (not across a power loss of the last commit).
    const char* pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;";
    sqlite3_exec(db_, pragmas, nullptr, nullptr, nullptr);
    if (sqlite3_exec(db_, kSchema, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown";
      sqlite3_free(err);
      return Status(Code::kInternal, "registry: creating the schema: " + msg);
    }
    // Content addresses of versions (added later: older files lack them).
    sqlite3_exec(db_, "ALTER TABLE code_versions ADD COLUMN sha256 TEXT NOT NULL DEFAULT ''", nullptr, nullptr,
                 nullptr);
    sqlite3_exec(db_, "ALTER TABLE code_versions ADD COLUMN archive_bytes INTEGER NOT NULL DEFAULT 0", nullptr,
                 nullptr, nullptr);
    sqlite3_busy_timeout(db_, 5000);
    int64_t now = NowUnixMs();
    {
      Stmt st(db_, "INSERT OR IGNORE INTO environments(name, description, created_ms) VALUES (?, ?, ?)");
      st.Bind(1, kDevEnv).Bind(2, "The default environment").Bind(3, now);
      if (st.Step() != SQLITE_DONE) return DbError(db_, "seeding dev.lever");
    }
    {
      Stmt st(db_, "INSERT OR IGNORE INTO environments(name, description, created_ms) VALUES (?, ?, ?)");
      st.Bind(1, kAdminEnv).Bind(2, "The admin environment").Bind(3, now);
      if (st.Step() != SQLITE_DONE) return DbError(db_, "seeding admin.lever");
    }
    {
      Stmt st(db_,
              "INSERT OR IGNORE INTO services(env, name, description, private, live_version, "
              "next_version) VALUES (?, ?, 'Manages Lever deployments', 0, 1, 2)");
      st.Bind(1, kAdminEnv).Bind(2, kAdminService);
      if (st.Step() != SQLITE_DONE) return DbError(db_, "seeding admin.lever/admin");
    }
    return Status::Ok();
  }

  Status CreateEnvironment(const EnvironmentInfo& env) override {
    if (!IsValidEnvName(env.name)) return InvalidArgument("Invalid environment name");
    std::lock_guard lock(mu_);
    Stmt st(db_, "INSERT OR IGNORE INTO environments(name, description, created_ms) VALUES (?, ?, ?)");
    st.Bind(1, env.name).Bind(2, env.description).Bind(3, NowUnixMs());
    if (st.Step() != SQLITE_DONE) return DbError(db_, "creating an environment");
    if (sqlite3_changes(db_) == 0) {
      return Status(Code::kAlreadyExists, "environment " + env.name + " already exists");
    }
    return Status::Ok();
  }

  Status GetEnvironment(std::string_view name, EnvironmentInfo* out) override {
    std::lock_guard lock(mu_);
    Stmt st(db_, "SELECT name, description FROM environments WHERE name = ?");
    st.Bind(1, name);
    int rc = st.Step();
    if (rc == SQLITE_DONE) return NotFoundEnv(name);
    if (rc != SQLITE_ROW) return DbError(db_, "reading an environment");
    out->name = st.Text(0);
    out->description = st.Text(1);
    return Status::Ok();
  }

  Status ListEnvironments(std::vector<EnvironmentInfo>* out) override {
    std::lock_guard lock(mu_);
    out->clear();
    Stmt st(db_, "SELECT name, description FROM environments ORDER BY name");
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) out->push_back({st.Text(0), st.Text(1)});
    if (rc != SQLITE_DONE) return DbError(db_, "listing environments");
    return Status::Ok();
  }

  Status DeleteEnvironment(std::string_view name) override {
    std::lock_guard lock(mu_);
    Txn txn(db_);
    {
      Stmt st(db_, "DELETE FROM environments WHERE name = ?");
      st.Bind(1, name);
      if (st.Step() != SQLITE_DONE) return DbError(db_, "deleting an environment");
      if (sqlite3_changes(db_) == 0) return NotFoundEnv(name);
    }
    for (const char* sql : {"DELETE FROM services WHERE env = ?", "DELETE FROM code_versions WHERE env = ?"}) {
      Stmt st(db_, sql);
      st.Bind(1, name);
      if (st.Step() != SQLITE_DONE) return DbError(db_, "deleting an environment");
    }
    return txn.Commit();
  }

  Status CreateService(const ServiceInfo& info) override {
    if (!IsValidEnvName(info.env)) return InvalidArgument("Invalid environment name");
    if (!IsValidServiceName(info.name)) return InvalidArgument("Invalid service name");
    std::lock_guard lock(mu_);
    Stmt st(db_,
            "INSERT OR IGNORE INTO services(env, name, description, private, live_version, "
            "next_version) VALUES (?, ?, ?, ?, 0, 1)");
    st.Bind(1, info.env).Bind(2, info.name).Bind(3, info.description).Bind(4, int64_t{info.is_private});
    if (st.Step() != SQLITE_DONE) return DbError(db_, "creating a service");
    if (sqlite3_changes(db_) == 0) {
      return Status(Code::kAlreadyExists, "service " + info.env + "/" + info.name + " already exists");
    }
    return Status::Ok();
  }

  Status GetService(std::string_view env, std::string_view name, ServiceInfo* out) override {
    std::lock_guard lock(mu_);
    Stmt st(db_,
            "SELECT env, name, description, private, live_version, next_version FROM services "
            "WHERE env = ? AND name = ?");
    st.Bind(1, env).Bind(2, name);
    int rc = st.Step();
    if (rc == SQLITE_DONE) return NotFoundService(env, name);
    if (rc != SQLITE_ROW) return DbError(db_, "reading a service");
    ReadService(st, out);
    return Status::Ok();
  }

  Status ListServices(std::string_view env, std::vector<ServiceInfo>* out) override {
    std::lock_guard lock(mu_);
    out->clear();
    Stmt st(db_,
            "SELECT env, name, description, private, live_version, next_version FROM services "
            "WHERE env = ? ORDER BY name");
    st.Bind(1, env);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      out->emplace_back();
      ReadService(st, &out->back());
    }
    if (rc != SQLITE_DONE) return DbError(db_, "listing services");
    return Status::Ok();
  }

  Status UpdateService(const ServiceInfo& info) override {
    std::lock_guard lock(mu_);
    Stmt st(db_,
            "UPDATE services SET description = ?, private = ?, live_version = ? "
            "WHERE env = ? AND name = ?");
    st.Bind(1, info.description).Bind(2, int64_t{info.is_private}).Bind(3, info.live_version);
    st.Bind(4, info.env).Bind(5, info.name);
    if (st.Step() != SQLITE_DONE) return DbError(db_, "updating a service");
    if (sqlite3_changes(db_) == 0) return NotFoundService(info.env, info.name);
    return Status::Ok();
  }

  Status AllocateVersion(std::string_view env, std::string_view service, int64_t* version) override {
    std::lock_guard lock(mu_);
    Stmt st(db_,
            "UPDATE services SET next_version = next_version + 1 WHERE env = ? AND name = ? "
            "RETURNING next_version - 1");
    st.Bind(1, env).Bind(2, service);
    int rc = st.Step();
    if (rc == SQLITE_DONE) return NotFoundService(env, service);
    if (rc != SQLITE_ROW) return DbError(db_, "allocating a version");
    *version = st.Int(0);
    if (st.Step() != SQLITE_DONE) return DbError(db_, "allocating a version");
    return Status::Ok();
  }

  Status AddCodeVersion(const CodeVersionInfo& info) override {
    std::lock_guard lock(mu_);
    Stmt st(db_,
            "INSERT OR IGNORE INTO code_versions(env, service, version, lever_json, created_ms, sha256, "
            "archive_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)");
    st.Bind(1, info.env).Bind(2, info.service).Bind(3, info.version).Bind(4, info.lever_json);
    st.Bind(5, info.created_unix_ms ? info.created_unix_ms : NowUnixMs());
    st.Bind(6, info.sha256).Bind(7, info.archive_bytes);
    if (st.Step() != SQLITE_DONE) return DbError(db_, "adding a code version");
    if (sqlite3_changes(db_) == 0) {
      return Status(Code::kAlreadyExists, "version " + std::to_string(info.version) + " of " +
                                              info.env + "/" + info.service + " already exists");
    }
    return Status::Ok();
  }

  Status GetCodeVersion(std::string_view env, std::string_view service, int64_t version,
                        CodeVersionInfo* out) override {
    std::lock_guard lock(mu_);
    Stmt st(db_,
            "SELECT lever_json, created_ms, sha256, archive_bytes FROM code_versions WHERE env = ? AND "
            "service = ? AND version = ?");
    st.Bind(1, env).Bind(2, service).Bind(3, version);
    int rc = st.Step();
    if (rc == SQLITE_DONE) {
      return Status(Code::kNotFound, "version " + std::to_string(version) + " of " +
                                         std::string(env) + "/" + std::string(service) + " not found");
    }
    if (rc != SQLITE_ROW) return DbError(db_, "reading a code version");
    out->env = std::string(env);
    out->service = std::string(service);
    out->version = version;
    out->lever_json = st.Text(0);
    out->created_unix_ms = st.Int(1);
    out->sha256 = st.Text(2);
    out->archive_bytes = st.Int(3);
    return Status::Ok();
  }

  Status DeleteCodeVersion(std::string_view env, std::string_view service, int64_t version) override {
    std::lock_guard lock(mu_);
    Stmt st(db_, "DELETE FROM code_versions WHERE env = ? AND service = ? AND version = ?");
    st.Bind(1, env).Bind(2, service).Bind(3, version);
    if (st.Step() != SQLITE_DONE) return DbError(db_, "deleting a code version");
    return Status::Ok();
  }

 private:
  // BEGIN IMMEDIATE .. COMMIT, rolled back unless committed.
  class Txn {
   public:
    explicit Txn(sqlite3* db) : db_(db) {
      ok_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    ~Txn() {
      if (ok_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    Status Commit() {
      if (!ok_) return DbError(db_, "beginning a transaction");
      done_ = true;
      if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
        Status s = DbError(db_, "committing");
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        return s;
      }
      return Status::Ok();
    }

   private:
    sqlite3* db_;
    bool ok_ = false;
    bool done_ = false;
  };

  static void ReadService(Stmt& st, ServiceInfo* out) {
    out->env = st.Text(0);
    out->name = st.Text(1);
    out->description = st.Text(2);
    out->is_private = st.Int(3) != 0;
    out->live_version = st.Int(4);
    out->next_version = st.Int(5);
  }
  static Status NotFoundEnv(std::string_view name) {
    return Status(Code::kNotFound, "environment " + std::string(name) + " not found");
  }
  static Status NotFoundService(std::string_view env, std::string_view name) {
    return Status(Code::kNotFound,
                  "service lever://" + std::string(env) + "/" + std::string(name) + " not found");
  }

  std::mutex mu_;  // serialises every use of db_
  sqlite3* db_;
};

}  // namespace

Status OpenEmbeddedRegistry(std::string_view path, std::string_view data_dir, RegistryPtr* out) {
  std::string file(path);
  if (file.empty()) {
    if (data_dir.empty()) return InvalidArgument("embedded registry: no path and no data dir");
    file = std::string(data_dir) + "/lever.db";
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Status(Code::kInternal, "registry: opening " + file + ": " + msg);
  }
  auto reg = std::make_shared<EmbeddedRegistry>(db);
  Status s = reg->Init();
  if (!s.ok()) return s;
  *out = std::move(reg);
  return Status::Ok();
}

}  // namespace lever::host
