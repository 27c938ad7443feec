// The guide's SwiftUI example (ParleyClient.docc/SwiftUI.md). SwiftUI exists only on Apple
// platforms, so on Linux, where the repository is built and tested, this file compiles to
// nothing; the snippet test still checks that the article shows this code.
#if canImport(SwiftUI)
import SwiftUI
import ParleyClient

struct MeetingChatView: View {
    @State private var model: MeetingModel
    @State private var draft = ""

    init(client: MeetingClient) {
        _model = State(initialValue: MeetingModel(client: client))
    }

    var body: some View {
        VStack {
            switch model.connectionState {
            case .reconnecting: Text("Reconnecting…")
            case .closed(let reason): Text("Disconnected: \(reason.description)")
            default: EmptyView()
            }
            List(model.meeting?.chat ?? [], id: \.seq) { message in
                Text(message.text)
            }
            TextField("Message", text: $draft)
                .onSubmit { send() }
        }
        .task { await model.run() }
    }

    private func send() {
        let text = draft
        draft = ""
        Task { try? await model.send(.chat(text: text)) }
    }
}
#endif
