import ParleyCore

/// Turns the meeting form's local date and time into a moment. Pure, so it is tested alone.
enum MeetingSchedule {
    enum Problem: Error, Equatable {
        case unreadable(String)
    }

    /// `date` is `YYYY-MM-DD` and `time` is `HH:MM` (what the browser's date and time inputs
    /// submit, whatever they display) on the user's clock, which is
    /// `offsetMinutes` behind UTC (JavaScript's `getTimezoneOffset()`: -60 for UTC+1).
    static func moment(date: String, time: String, offsetMinutes: Int) throws(Problem) -> Millis {
        let day = date.split(separator: "-").compactMap { Int($0) }
        let clock = time.split(separator: ":").compactMap { Int($0) }
        guard day.count == 3, clock.count >= 2, (1...12).contains(day[1]), (1...31).contains(day[2]),
              (1970...9999).contains(day[0]), (0...23).contains(clock[0]), (0...59).contains(clock[1]),
              (-14 * 60...14 * 60).contains(offsetMinutes)
        else { throw .unreadable("to schedule a meeting, choose the day and the time it starts") }
        guard day[2] <= daysIn(month: day[1], year: day[0]) else {
            throw .unreadable("\(day[2]) \(monthNames[day[1] - 1]) \(day[0]) is not a day of the calendar; choose another day")
        }
        let days = daysFromCivil(year: day[0], month: day[1], day: day[2])
        let minutes = days * 24 * 60 + clock[0] * 60 + clock[1] + offsetMinutes
        return Millis(minutes) * 60_000
    }

    private static let monthNames = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                                     "October", "November", "December"]

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
