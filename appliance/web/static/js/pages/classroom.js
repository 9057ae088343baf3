// The learner's classroom. A shell for now: the live classroom (issue 3's protocol.js, the
// media relay, documents) fills #classroom; access was checked by the server.
import { boot } from "../ui.js";

await boot({ title: "classroom.title", signedIn: true });
