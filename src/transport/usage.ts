// QueryUsage / WatchUsage — being implemented (issue 4, usage history and live usage).
import { status } from "@grpc/grpc-js";
import type { AdminServer } from "../gen/aisa/v1/admin.js";

export function createUsageHandlers(): Pick<AdminServer, "queryUsage" | "watchUsage"> {
  return {
    queryUsage: (_call, cb) => cb({ code: status.UNIMPLEMENTED, details: "QueryUsage is not implemented yet" }),
    watchUsage: (call) => call.emit("error", { code: status.UNIMPLEMENTED, details: "WatchUsage is not implemented yet" }),
  };
}
